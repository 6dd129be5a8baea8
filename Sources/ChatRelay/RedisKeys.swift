import RedisClient

/// Where the Redis broker keeps things, all under one prefix (`--redis-prefix`), so several
/// deployments can share a Redis.
///
/// - `<prefix>:room:<room>`: the room's history, a stream; each entry holds the message JSON after
///   its id in field `m`.
/// - `<prefix>:trimmed:<room>`: the newest id trimmed from that stream (for the `reset` event).
/// - `<prefix>:idem:<room>:<key>`: the message an `Idempotency-Key` stored (`<id> <json>`), for 10 minutes.
/// - `<prefix>:ticket:<ticket>`: a stream ticket's identity, until it is redeemed or expires.
/// - `<prefix>:events:<room>`: the room's pub/sub channel (`ChannelRouting.room`), subscribed by the
///   event loops that serve the room; a payload is `<room> <id> <json>`.
/// - `<prefix>:presence:<room>`: who is in the room, a hash of `<node>|<user>` to the node's
///   `PresenceEntry` JSON; `<prefix>:presence-nodes`: a sorted set of the nodes that write them,
///   scored with the time (ms) each stops being alive unless it refreshes.
/// - `<prefix>:events`: the one channel of every room (`ChannelRouting.shared`), the same payloads.
///
/// On a Redis Cluster (`hashTags`) the room's part is written `{<room>}`: a hash tag, so a room's
/// stream, marker, idempotency keys and channel share one hash slot, and the publish script, which
/// touches all of them, runs on one node in one round trip. Standalone keys keep their plain
/// names, so a deployment's data stays where it was.
public struct RedisKeys: Sendable {
    public let prefix: String
    public let hashTags: Bool

    public init(prefix: String, hashTags: Bool = false) {
        self.prefix = prefix
        self.hashTags = hashTags
    }

    /// The room as it appears in its keys.
    private func tagged(_ room: RoomName) -> String { hashTags ? "{\(room.value)}" : room.value }

    public func stream(_ room: RoomName) -> String { "\(prefix):room:\(tagged(room))" }
    public func trimmed(_ room: RoomName) -> String { "\(prefix):trimmed:\(tagged(room))" }
    public func idempotency(_ room: RoomName, _ key: String) -> String { "\(prefix):idem:\(tagged(room)):\(key)" }
    public func ticket(_ ticket: String) -> String { "\(prefix):ticket:\(ticket)" }
    public var channel: String { "\(prefix):events" }
    /// The room's presence: a hash of every node's entry per member (`PresenceEntry.field`).
    public func presence(_ room: RoomName) -> String { "\(prefix):presence:\(tagged(room))" }
    /// Every node that keeps presence entries, scored with when it stops being alive (ms).
    public var presenceNodes: String { "\(prefix):presence-nodes" }
    public func channel(_ room: RoomName) -> String { "\(prefix):events:\(tagged(room))" }

    /// The hash slot of every key and the channel of `room` (on a cluster: its hash tag's).
    public func slot(_ room: RoomName) -> Int { RedisKeySlot.of(stream(room)) }

    /// The room whose channel (`channel(_:)`) is `channel`, if it is one.
    public func room(ofChannel channel: String) -> RoomName? {
        let head = "\(prefix):events:"
        guard channel.hasPrefix(head) else { return nil }
        let name = channel.dropFirst(head.count)
        guard hashTags else { return RoomName(name) }
        guard name.hasPrefix("{"), name.hasSuffix("}") else { return nil }
        return RoomName(name.dropFirst().dropLast())
    }
}

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
/// - `<prefix>:events`: the one channel of every room (`ChannelRouting.shared`), the same payloads.
public struct RedisKeys: Sendable {
    public let prefix: String

    public init(prefix: String) {
        self.prefix = prefix
    }

    public func stream(_ room: RoomName) -> String { "\(prefix):room:\(room.value)" }
    public func trimmed(_ room: RoomName) -> String { "\(prefix):trimmed:\(room.value)" }
    public func idempotency(_ room: RoomName, _ key: String) -> String { "\(prefix):idem:\(room.value):\(key)" }
    public func ticket(_ ticket: String) -> String { "\(prefix):ticket:\(ticket)" }
    public var channel: String { "\(prefix):events" }
    public func channel(_ room: RoomName) -> String { "\(prefix):events:\(room.value)" }

    /// The room whose channel (`channel(_:)`) is `channel`, if it is one.
    public func room(ofChannel channel: String) -> RoomName? {
        let head = "\(prefix):events:"
        guard channel.hasPrefix(head) else { return nil }
        return RoomName(String(channel.dropFirst(head.count)))
    }
}

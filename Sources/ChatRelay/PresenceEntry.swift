import Foundation
import NIOCore

/// One node's record of one member of a room: who, since when, on how many of that node's
/// connections. What the broker stores per (room, node, member) and sends to every node when it
/// changes; a node's view of a room is the sum of every live node's entries.
public struct PresenceEntry: Sendable, Equatable {
    /// The node that holds the member's connections: its id and the start of its life
    /// (`<node id>:<start ms>`), so a node restarted under the same id does not inherit the
    /// entries of the one that crashed.
    public var node: String
    public var room: RoomName
    public var member: Participant
    /// Milliseconds since the epoch of the first of these connections.
    public var since: UInt64
    /// Open streams of the member in the room on that node; 0: it left that node.
    public var connections: Int

    public init(node: String, room: RoomName, member: Participant, since: UInt64, connections: Int) {
        self.node = node
        self.room = room
        self.member = member
        self.since = since
        self.connections = connections
    }

    /// The key of the entry within its room: node and member.
    public var field: String { node + "|" + member.user }

    /// The entry as one line of JSON: `{"node":…,"room":…,"user":…,"name":…,"verified":…,
    /// "since":…,"connections":…}`: how brokers store and send it.
    public var json: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeStaticString("{\"node\":")
        JSONString.write(node, into: &buffer)
        buffer.writeStaticString(",\"room\":")
        JSONString.write(room.value, into: &buffer)
        buffer.writeStaticString(",")
        member.writeFields(into: &buffer)
        buffer.writeString(",\"since\":\(since),\"connections\":\(connections)}")
        return buffer
    }

    /// The fields of `json`, as decoded.
    private struct Wire: Decodable {
        let node: String
        let room: String
        let user: String
        let name: String?
        let verified: Bool
        let since: UInt64
        let connections: Int
    }

    /// Reads what `json` wrote; nil for anything else.
    public init?(json bytes: [UInt8]) {
        guard let wire = try? JSONDecoder().decode(Wire.self, from: Data(bytes)), let room = RoomName(wire.room), wire.connections >= 0
        else { return nil }
        self.init(
            node: wire.node, room: room, member: Participant(user: wire.user, name: wire.name, verified: wire.verified),
            since: wire.since, connections: wire.connections)
    }
}

/// A member of a room across the cluster: the entries of every node summed.
public struct PresenceMember: Sendable, Equatable {
    public var member: Participant
    /// The earliest `since` of its entries.
    public var since: UInt64
    /// Its open streams in the room, on every node.
    public var connections: Int

    /// The members `entries` make, one per user (entries with no connection left out), oldest
    /// first (then by user).
    public static func merging(_ entries: some Sequence<PresenceEntry>) -> [PresenceMember] {
        var byUser: [String: PresenceMember] = [:]
        for entry in entries where entry.connections > 0 {
            if var known = byUser[entry.member.user] {
                known.since = min(known.since, entry.since)
                known.connections += entry.connections
                if known.member.name == nil { known.member.name = entry.member.name }
                byUser[entry.member.user] = known
            } else {
                byUser[entry.member.user] = PresenceMember(member: entry.member, since: entry.since, connections: entry.connections)
            }
        }
        return byUser.values.sorted { ($0.since, $0.member.user) < ($1.since, $1.member.user) }
    }

    /// Writes `{"user":…,"name":…,"verified":…,"since":"<RFC 3339>","connections":…}`.
    public func writeJSON(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{")
        member.writeFields(into: &buffer)
        buffer.writeStaticString(",\"since\":\"")
        Timestamp.writeRFC3339(milliseconds: since, into: &buffer)
        buffer.writeString("\",\"connections\":\(connections)}")
    }
}

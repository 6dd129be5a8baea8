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
        if let entry = Self.parseWritten(bytes) {
            self = entry
            return
        }
        guard let wire = try? JSONDecoder().decode(Wire.self, from: Data(bytes)), let room = RoomName(wire.room), wire.connections >= 0
        else { return nil }
        self.init(
            node: wire.node, room: room, member: Participant(user: wire.user, name: wire.name, verified: wire.verified),
            since: wire.since, connections: wire.connections)
    }

    /// The fields in the order and form `json` writes them, when no string holds an escape (a
    /// name with a quote or a non-ASCII control goes through `JSONDecoder`): every node reads
    /// every change of the rooms it follows, and `JSONDecoder` was 7 % of a node's CPU when
    /// 10 000 arrived in one room.
    static func parseWritten(_ bytes: [UInt8]) -> PresenceEntry? {
        guard !bytes.contains(UInt8(ascii: "\\")) else { return nil }
        var index = 0
        func expect(_ literal: StaticString) -> Bool {
            let count = literal.utf8CodeUnitCount
            guard index + count <= bytes.count else { return false }
            let matches = literal.withUTF8Buffer { bytes[index..<(index + count)].elementsEqual($0) }
            if matches { index += count }
            return matches
        }
        func string() -> String? {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\""),
                let end = bytes[(index + 1)...].firstIndex(of: UInt8(ascii: "\""))
            else { return nil }
            defer { index = end + 1 }
            return String(validating: bytes[(index + 1)..<end], as: UTF8.self)
        }
        func number() -> UInt64? {
            var value: UInt64 = 0
            let start = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                let (times, overflow) = value.multipliedReportingOverflow(by: 10)
                let (sum, carry) = times.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
                guard !overflow, !carry else { return nil }
                value = sum
                index += 1
            }
            return index > start ? value : nil
        }
        guard expect("{\"node\":"), let node = string(), expect(",\"room\":"), let roomName = string(),
            let room = RoomName(roomName), expect(",\"user\":"), let user = string()
        else { return nil }
        var name: String?
        if expect(",\"name\":") {
            guard let named = string() else { return nil }
            name = named
        }
        let verified: Bool
        if expect(",\"verified\":true") {
            verified = true
        } else if expect(",\"verified\":false") {
            verified = false
        } else {
            return nil
        }
        guard expect(",\"since\":"), let since = number(), expect(",\"connections\":"), let connections = number(),
            connections <= UInt64(Int.max), expect("}"), index == bytes.count
        else { return nil }
        return PresenceEntry(
            node: node, room: room, member: Participant(user: user, name: name, verified: verified), since: since,
            connections: Int(connections))
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

    /// Writes `{"room":<room>,"count":<count>`: how every presence event and answer begins; the
    /// caller writes its lists and the closing brace.
    public static func writeOpening(room: RoomName, count: Int, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"room\":")
        JSONString.write(room.value, into: &buffer)
        buffer.writeString(",\"count\":\(count)")
    }

    /// Writes `[<member>,…]`.
    public static func writeJSON(_ members: some Sequence<PresenceMember>, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("[")
        for (index, member) in members.enumerated() {
            if index > 0 { buffer.writeStaticString(",") }
            member.writeJSON(into: &buffer)
        }
        buffer.writeStaticString("]")
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

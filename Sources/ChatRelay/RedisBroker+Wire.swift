import NIOCore
import RedisClient

/// How messages look in Redis: a stream entry (`XRANGE` reply) and a live event on the channel
/// (`<room> <id> <json>`, as the publish script sends it; `<room> <kind> <json>` for a signal).
extension RedisBroker {
    /// XRANGE / XREVRANGE entries `[id, [field, value, …]]` as messages: the JSON is `{"id":"` + id + tail.
    static func entries(_ reply: RedisReply, room: RoomName) throws -> [StoredMessage] {
        guard let entries = reply.array else { throw BrokerError.unavailable("unexpected reply: \(reply)") }
        return entries.compactMap { entry in
            guard let parts = entry.array, parts.count == 2, let idText = parts[0].string, let id = MessageID(idText),
                let fields = parts[1].array, fields.count >= 2, let tail = fields[1].bytes, isOneLine(tail)
            else { return nil }
            return StoredMessage(id: id, room: room, json: Message.json(id: idText, tail: tail))
        }
    }

    /// Whether `json` is one line, as every node writes it (`JSONString` escapes line breaks): a
    /// line break would end its SSE event early and let the rest pass for fields of another. So
    /// what someone else wrote into Redis cannot forge events on the streams.
    static func isOneLine(_ json: some Collection<UInt8>) -> Bool {
        !json.contains { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }
    }

    /// What a room's channel carries.
    enum ChannelEvent {
        /// A message, or a signal for the room's streams.
        case event(StoredMessage)
        /// A node's changed presence entry.
        case presence(PresenceEntry)
    }

    /// A live event: `<room> <id> <json>`, a signal, `<room> typing <json>` (or `presence`), or a
    /// presence entry, `<room> member <json>`.
    static func parseChannelEvent(_ payload: [UInt8]) -> ChannelEvent? {
        if let event = parseEvent(payload) { return .event(event) }
        guard let firstSpace = payload.firstIndex(of: UInt8(ascii: " ")),
            payload[(firstSpace + 1)...].starts(with: "member ".utf8),
            let entry = PresenceEntry(json: Array(payload[(firstSpace + 8)...]))
        else { return nil }
        return .presence(entry)
    }

    /// A live event: `<room> <id> <json>`, or a signal, `<room> typing <json>` or
    /// `<room> presence <json>`.
    static func parseEvent(_ payload: [UInt8]) -> StoredMessage? {
        guard let firstSpace = payload.firstIndex(of: UInt8(ascii: " ")),
            let room = RoomName(String(decoding: payload[..<firstSpace], as: UTF8.self)),
            let secondSpace = payload[(firstSpace + 1)...].firstIndex(of: UInt8(ascii: " "))
        else { return nil }
        let second = payload[(firstSpace + 1)..<secondSpace]
        guard isOneLine(payload[(secondSpace + 1)...]) else { return nil }
        let json = ByteBuffer(bytes: payload[(secondSpace + 1)...])
        if let id = MessageID(String(decoding: second, as: UTF8.self)) {
            return StoredMessage(id: id, room: room, json: json)
        }
        for kind in [StoredMessage.Kind.typing, .presence] where second.elementsEqual(kind.name.utf8) {
            return StoredMessage(signal: kind, room: room, json: json)
        }
        return nil
    }
}

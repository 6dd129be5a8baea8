import NIOCore
import RedisClient

/// How messages look in Redis: a stream entry (`XRANGE` reply) and a live event on the channel
/// (`<room> <id> <json>`, as the publish script sends it).
extension RedisBroker {
    /// XRANGE / XREVRANGE entries `[id, [field, value, …]]` as messages: the JSON is `{"id":"` + id + tail.
    static func entries(_ reply: RedisReply, room: RoomName) throws -> [StoredMessage] {
        guard let entries = reply.array else { throw BrokerError.unavailable("unexpected reply: \(reply)") }
        return entries.compactMap { entry in
            guard let parts = entry.array, parts.count == 2, let idText = parts[0].string, let id = MessageID(idText),
                let fields = parts[1].array, fields.count >= 2, let tail = fields[1].bytes
            else { return nil }
            return StoredMessage(id: id, room: room, json: Message.json(id: idText, tail: tail))
        }
    }

    /// A live event: `<room> <id> <json>`.
    static func parseEvent(_ payload: [UInt8]) -> StoredMessage? {
        guard let firstSpace = payload.firstIndex(of: UInt8(ascii: " ")),
            let room = RoomName(String(decoding: payload[..<firstSpace], as: UTF8.self)),
            let secondSpace = payload[(firstSpace + 1)...].firstIndex(of: UInt8(ascii: " ")),
            let id = MessageID(String(decoding: payload[(firstSpace + 1)..<secondSpace], as: UTF8.self))
        else { return nil }
        return StoredMessage(id: id, room: room, json: ByteBuffer(bytes: payload[(secondSpace + 1)...]))
    }
}

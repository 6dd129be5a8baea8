import ChatRelay
import NIOCore

extension RelayNode {
    /// `Idempotency-Key`: 1 to 64 printable ASCII characters, if present.
    static func idempotencyKey(_ header: String?) throws(APIError) -> String? {
        guard let key = header else { return nil }
        guard (1...64).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw APIError.invalidField("Idempotency-Key: must be 1 to 64 printable ASCII characters")
        }
        return key
    }

    /// The rate limiter's key for a client: its address as `--trusted-proxies` lets the node find
    /// it (`TrustedProxies.clientAddress`).
    func clientKey(forwardedFor: [String], address: SocketAddress?) -> String {
        configuration.trustedProxies.clientAddress(peer: address, forwardedFor: forwardedFor)
    }

    /// `GET /rooms/{room}/messages?after=&limit=`: the room's history, oldest first.
    func historyAnswer(room: RoomName, target: RequestTarget) async throws(APIError) -> Answer {
        var after: MessageID? = nil
        if let text = target.value(of: "after") {
            after = try Self.messageID(text, field: "after")
        }
        var limit = 50
        if let text = target.value(of: "limit") {
            guard let value = Int(text), value >= 1 else {
                throw APIError.invalidField("limit: must be a whole number from 1 to 500")
            }
            limit = min(value, 500)
        }
        let messages: [StoredMessage]
        do {
            messages = try await broker.history(room: room, after: after, limit: limit)
        } catch {
            throw APIError.unavailable("History cannot be read now: \(error).")
        }
        var body = ByteBuffer()
        body.reserveCapacity(messages.reduce(16) { $0 + $1.json.readableBytes + 1 })
        body.writeStaticString("{\"messages\":[")
        for (index, message) in messages.enumerated() {
            if index > 0 { body.writeInteger(UInt8(ascii: ",")) }
            body.writeImmutableBuffer(message.json)
        }
        body.writeStaticString("]}")
        return Answer(status: .ok, contentType: Answer.jsonType, body: body)
    }
}

import ChatRelay
import Hummingbird
import NIOCore

extension RelayNode {
    /// `POST /rooms/{room}/messages`, `POST /messages` (lobby) and `GET /rooms/{room}/messages`.
    func addMessageRoutes(to router: Router<RelayRequestContext>) {
        router.post("/rooms/:room/messages") { request, context in
            try await self.publish(room: try Self.room(context), request: request, context: context)
        }
        router.post("/messages") { request, context in
            try await self.publish(room: .lobby, request: request, context: context)
        }
        router.get("/rooms/:room/messages") { request, context in
            try await self.history(room: try Self.room(context), request: request)
        }
    }

    static func room(_ context: RelayRequestContext) throws -> RoomName {
        let name = context.parameters.get("room") ?? ""
        guard let room = RoomName(name) else { throw APIError.invalidRoom(name) }
        return room
    }

    /// A publish through the router: the request's fields to `checkPublish`, its body to
    /// `publish(_:body:)`, the answer as Hummingbird's response.
    func publish(room: RoomName, request: Request, context: RelayRequestContext) async throws -> Response {
        let publish = try checkPublish(
            PublishRequest(
                room: room,
                contentType: request.headers[.contentType],
                contentLength: request.headers[.contentLength].flatMap(Int.init),
                idempotencyKey: request.headers[.idempotencyKey],
                clientKey: clientKey(forwardedFor: request.headers[values: .xForwardedFor], address: context.channel.remoteAddress)))
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: configuration.maxBodyBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError.tooLarge(limit: configuration.maxBodyBytes)
        }
        let answer = try await self.publish(publish, body: body)
        var headers: HTTPFields = [.contentType: PublishAnswer.contentType]
        headers[.location] = answer.location
        return Response(status: answer.created ? .created : .ok, headers: headers, body: ResponseBody(byteBuffer: answer.body))
    }

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

    func history(room: RoomName, request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        var after: MessageID? = nil
        if let text = query.get("after") {
            after = try Self.messageID(text, field: "after")
        }
        var limit = 50
        if let text = query.get("limit") {
            guard let value = Int(text), value >= 1 else {
                throw APIError.invalidField("limit: must be a whole number from 1 to 500")
            }
            limit = min(value, 500)
        }
        let messages: [StoredMessage]
        do {
            messages = try await broker.history(room: room, after: after, limit: limit)
        } catch let error as BrokerError {
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
        return Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: ResponseBody(byteBuffer: body))
    }
}

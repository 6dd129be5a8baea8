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

    func publish(room: RoomName, request: Request, context: RelayRequestContext) async throws -> Response {
        if let wait = rateLimiter.admit(clientKey(request, context)) {
            metrics.rateLimited.increment()
            throw APIError.rateLimited(retryAfter: max(1, Int(wait.components.seconds) + (wait.components.attoseconds > 0 ? 1 : 0)))
        }
        let limit = configuration.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError.tooLarge(limit: limit)
        }
        guard let mediaType = MessageBodyDecoder.MediaType(contentType: request.headers[.contentType]) else {
            throw APIError.unsupportedMediaType
        }
        let idempotencyKey = try Self.idempotencyKey(request)
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError.tooLarge(limit: limit)
        }
        let fields = try MessageBodyDecoder.decode(body, as: mediaType)
        let draft: MessageDraft
        do {
            draft = try MessageDraft(room: room, user: fields.user, text: fields.text).validated(limits: configuration.messageLimits)
        } catch {
            throw APIError.invalidField(error.description)
        }

        let started = ContinuousClock.now
        let outcome: PublishOutcome
        do {
            outcome = try await broker.publish(draft, idempotencyKey: idempotencyKey)
        } catch let error as BrokerError {
            logger.warning("publish refused", metadata: ["room": "\(room)", "error": "\(error)"])
            throw APIError.unavailable("The message was not accepted: the broker is unavailable. Retry shortly.")
        }
        metrics.publishLatency.record(duration: ContinuousClock.now - started)
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        headers[.location] = "/rooms/\(room)/messages?after=\(outcome.message.id)"
        switch outcome {
        case .created(let message):
            metrics.messagesPublished.increment()
            return Response(status: .created, headers: headers, body: ResponseBody(byteBuffer: message.json))
        case .duplicate(let message):
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: message.json))
        }
    }

    /// `Idempotency-Key`: 1 to 64 printable ASCII characters, if present.
    static func idempotencyKey(_ request: Request) throws -> String? {
        guard let key = request.headers[.idempotencyKey] else { return nil }
        guard (1...64).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw APIError.invalidField("Idempotency-Key: must be 1 to 64 printable ASCII characters")
        }
        return key
    }

    /// The rate limiter's key for a client: its address, or the first `X-Forwarded-For` hop when
    /// the node is told to trust its proxy.
    func clientKey(_ request: Request, _ context: RelayRequestContext) -> String {
        if configuration.trustForwardedFor, let forwarded = request.headers[.xForwardedFor],
            let first = forwarded.split(separator: ",").first
        {
            return first.trimmingCharacters(in: .whitespaces)
        }
        return context.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    func history(room: RoomName, request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        var after: MessageID? = nil
        if let text = query.get("after") {
            guard let id = MessageID(text) else {
                throw APIError.invalidField("after: must be a message id of the form <ms>-<seq>")
            }
            after = id
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

import ChatRelay
import NIOCore

/// What a message POST says before its body.
struct PublishRequest: Sendable {
    let room: RoomName
    let contentType: String?
    let contentLength: Int?
    /// The `Idempotency-Key` header, unchecked.
    let idempotencyKey: String?
    /// Who the rate limiter counts the message against: the client, in a bucket of its own for
    /// typing signals.
    let clientKey: String
    /// The client (`RelayNode.clientKey`).
    let client: String
}

/// A POST that passed the checks made before its body is read.
struct AdmittedPublish: Sendable {
    let room: RoomName
    let mediaType: MessageBodyDecoder.MediaType
    let idempotencyKey: String?
    /// The client's address (`RelayNode.clientKey`): with `--auth none`, part of who owns its
    /// idempotency keys.
    let client: String
}

/// The answer to an accepted POST: `201` with the new message, or `200` with the first message
/// of a repeated `Idempotency-Key`.
struct PublishAnswer: Sendable {
    let created: Bool
    /// `Location`: the room's messages after this one.
    let location: String
    /// The message JSON.
    let body: ByteBuffer

    /// As the answer written to the client: `201` (or `200`), the message, `Location`.
    var answer: Answer {
        Answer(status: created ? .created : .ok, contentType: Answer.jsonType, body: body, headers: [("Location", location)])
    }
}

extension RelayNode {
    /// The checks before the body: the rate limit, the declared size, the media type and the
    /// `Idempotency-Key`.
    func checkPublish(_ request: PublishRequest) throws(APIError) -> AdmittedPublish {
        try checkRate(request.clientKey)
        if let length = request.contentLength, length > configuration.maxBodyBytes {
            throw APIError.tooLarge(limit: configuration.maxBodyBytes)
        }
        guard let mediaType = MessageBodyDecoder.MediaType(contentType: request.contentType) else {
            throw APIError.unsupportedMediaType
        }
        return AdmittedPublish(
            room: request.room, mediaType: mediaType, idempotencyKey: try Self.idempotencyKey(request.idempotencyKey),
            client: request.client)
    }

    /// A stored message's `Location`: the room's messages after it.
    static func location(of message: StoredMessage) -> String {
        "/rooms/\(message.room)/messages?after=\(message.id)"
    }

    /// The request bucket (`--request-rate-limit`) for `client`: `429` with `Retry-After` past it.
    func checkRequestRate(_ client: String) throws(APIError) {
        if let wait = requestLimiter.admit(client) {
            metrics.refusedForClient[.requests]?.increment()
            throw APIError.clientLimit(
                "rate_limited",
                "Too many requests from this client (streams, history, presence, tickets, sessions); retry in \(wait.wholeSecondsRoundedUp) s.",
                retryAfter: wait.wholeSecondsRoundedUp)
        }
    }

    /// The POST rate limit (`--rate-limit`) for `clientKey`: `429` with `Retry-After` past it.
    func checkRate(_ clientKey: String) throws(APIError) {
        if let wait = rateLimiter.admit(clientKey) {
            metrics.rateLimited.increment()
            throw APIError.rateLimited(retryAfter: wait.wholeSecondsRoundedUp)
        }
    }

    /// Checks the caller may post in the room, decodes and validates the body, hands the message
    /// to the broker and returns the answer. With `--auth jwt` the message's `user` (and `name`)
    /// are the token's; a `user` in the body is ignored.
    func publish(_ request: AdmittedPublish, body: ByteBuffer, credentials: Credentials?) async throws(APIError) -> PublishAnswer {
        let identity = try await authorize(credentials, .publish, room: request.room)
        let fields = try MessageBodyDecoder.decode(body, as: request.mediaType)
        let draft: MessageDraft
        do {
            let submitted =
                identity.map {
                    MessageDraft(room: request.room, user: $0.subject, name: $0.name, text: fields.text, userIsVerified: true)
                } ?? MessageDraft(room: request.room, user: fields.user, text: fields.text)
            draft = try submitted.validated(limits: configuration.messageLimits)
        } catch {
            throw APIError.invalidField(error.description)
        }
        // A key is its poster's: the token's subject, or (anyone may claim any name) the claimed
        // user at the client's address.
        let idempotency = request.idempotencyKey.map { key in
            Idempotency(key: key, poster: identity.map { "sub \($0.subject)" } ?? "user \(draft.user) \(request.client)", draft: draft)
        }
        let started = ContinuousClock.now
        let outcome: PublishOutcome
        do {
            outcome = try await broker.publish(draft, idempotency: idempotency)
        } catch BrokerError.unreplicated(let acknowledged, let required) {
            metrics.publishUnreplicated.increment()
            logger.warning("publish not replicated", metadata: ["room": "\(request.room)", "replicas": "\(acknowledged)/\(required)"])
            throw APIError.unavailable(
                "The message was stored, but \(acknowledged) of the \(required) replicas it needs confirmed it in time. Retry it with the same Idempotency-Key: you get the message back once they do."
            )
        } catch BrokerError.full(let reason) {
            metrics.publishFull.increment()
            logger.error("publish refused: Redis is full", metadata: ["room": "\(request.room)", "error": "\(reason)"])
            throw APIError.unavailable(
                "The message was not accepted: the relay's store is full (Redis at its maxmemory); nothing was stored. Retry later.",
                retryAfter: 10)
        } catch {
            metrics.publishUnavailable.increment()
            logger.warning("publish refused", metadata: ["room": "\(request.room)", "error": "\(error)"])
            throw APIError.unavailable("The message was not accepted: the broker is unavailable. Retry shortly.")
        }
        metrics.publishLatency.record(duration: ContinuousClock.now - started)
        switch outcome {
        case .created(let message):
            metrics.messagesPublished.increment()
            return PublishAnswer(created: true, location: Self.location(of: message), body: message.json)
        case .duplicate(let message):
            return PublishAnswer(created: false, location: Self.location(of: message), body: message.json)
        case .keyReused:
            throw APIError.idempotencyKeyReused
        }
    }
}

import ChatRelay
import NIOCore

extension RelayNode {
    /// `POST /rooms/{room}/typing`: relays `event: typing` to the room's streams on every node,
    /// live only. Who is typing is the token's identity (`--auth jwt`, with the publish grant) or
    /// the body's `user`, marked as claimed. It passed the POST checks (rate limit, size, media
    /// type) before its body; a body's `text` is ignored.
    func typing(_ request: AdmittedPublish, body: ByteBuffer, credentials: Credentials?) async throws(APIError) -> Answer {
        let identity = try await authorize(credentials, .publish, room: request.room)
        let who: Participant
        if let identity {
            who = Participant(user: identity.subject, name: identity.name, verified: true)
        } else {
            let claimed = try MessageBodyDecoder.decode(body, as: request.mediaType).user
            do {
                who = Participant(user: try MessageDraft.validatedUser(claimed), name: nil, verified: false)
            } catch {
                throw APIError.invalidField(error.description)
            }
        }
        var json = ByteBuffer()
        who.writeJSON(room: request.room, into: &json)
        do {
            try await broker.signal(StoredMessage(signal: .typing, room: request.room, json: json))
        } catch {
            logger.warning("typing not relayed", metadata: ["room": "\(request.room)", "error": "\(error)"])
            throw APIError.unavailable("The typing signal was not relayed: the broker is unavailable.")
        }
        metrics.typingSignals.increment()
        return Answer(status: .noContent, contentType: nil, body: ByteBuffer(), headers: [])
    }
}

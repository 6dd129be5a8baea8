import ChatRelay
import NIOCore
import RelayAccess

extension RelayNode {
    /// A stream, registered with the hub but not live yet, and what to write before it goes live.
    struct StreamOpening: Sendable {
        let subscription: Subscription
        /// The preamble, a reset if history was lost, and the replay: SSE bytes, not chunked.
        let firstBytes: ByteBuffer
        /// Hand to `goLive(after:)` once `firstBytes` are written.
        let liveAfter: MessageID
        /// Who opened it (`--auth jwt`): the stream ends when the token expires.
        let identity: Identity?
    }

    /// Opens a stream on `output`'s connection: registers with the hub first (so live messages
    /// queue up), reads what the client missed after `lastEventID`, and returns the opening to
    /// write. Going live after the last replayed id drops everything the replay already had: no
    /// gap and no duplicate between replay and live. The subscription ends when the connection
    /// closes.
    func openStream(
        room: RoomName, lastEventID: MessageID?, credentials: Credentials?, output: ChannelStreamOutput
    ) async throws(APIError) -> StreamOpening {
        guard !hub.isDraining else { throw APIError.draining }
        let identity = try await authorize(credentials, .subscribe, room: room)
        // Every stream has a position, even without Last-Event-ID: the room's newest id, read
        // before registering, so what is published in between is replayed rather than lost.
        let resumeAfter: MessageID
        if let lastEventID {
            resumeAfter = lastEventID
        } else {
            do {
                resumeAfter = try await broker.latestID(room: room) ?? .zero
            } catch {
                logger.warning("cannot open stream", metadata: ["room": "\(room)", "error": "\(error)"])
                throw APIError.unavailable("The room cannot be read now; retry shortly.")
            }
        }
        let subscription: Subscription
        do {
            subscription = try hub.subscribe(room: room, after: resumeAfter, output: output)
        } catch {
            switch error {
            case .draining:
                throw APIError.draining
            case .atCapacity:
                metrics.connectionLimited.increment()
                throw APIError.unavailable("This node is at its connection limit; retry shortly or use another node.", retryAfter: 2)
            }
        }

        // A client that leaves is noticed at once, not at the next heartbeat write: its place
        // (and the connection limit slot) is freed as soon as the connection closes.
        let hub = self.hub
        output.channel.closeFuture.whenComplete { _ in hub.unsubscribe(subscription) }

        var opening = SSE.preamble(retryMilliseconds: configuration.retryMilliseconds, node: configuration.nodeID)
        let replay: Replay
        do {
            // Live events of the room reach this node from here on; what came before is in the replay.
            try await broker.listen(room: room)
            replay = try await broker.replay(room: room, after: resumeAfter)
        } catch {
            hub.unsubscribe(subscription)
            logger.warning("cannot replay", metadata: ["room": "\(room)", "error": "\(error)"])
            throw APIError.unavailable("The room's history cannot be read now; retry shortly.")
        }
        // `0` asks for everything retained: a client that had nothing cannot have missed it.
        if let lastEventID, lastEventID > .zero, replay.messagesLost {
            opening.writeImmutableBuffer(SSE.reset(oldest: replay.oldestRetained))
        }
        for message in replay.messages {
            opening.writeImmutableBuffer(message.frame)
        }
        return StreamOpening(
            subscription: subscription, firstBytes: opening, liveAfter: replay.messages.last?.id ?? resumeAfter, identity: identity)
    }

    /// The id to resume after: the `Last-Event-ID` header, else the `lastEventId` query parameter.
    static func lastEventID(header: String?, query: String?) throws(APIError) -> MessageID? {
        guard let text = header ?? query, !text.isEmpty else { return nil }
        return try messageID(text, field: "Last-Event-ID")
    }

    /// A message id a client gives (`Last-Event-ID`, `after`): `<ms>-<seq>`, or `0` for the very
    /// beginning (as Redis takes it), the same as `0-0`.
    static func messageID(_ text: String, field: String) throws(APIError) -> MessageID {
        if text == "0" { return .zero }
        guard let id = MessageID(text) else {
            throw APIError.invalidField("\(field): must be a message id of the form <ms>-<seq>, or 0 for the beginning")
        }
        return id
    }
}

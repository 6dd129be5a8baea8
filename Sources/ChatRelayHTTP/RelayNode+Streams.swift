import ChatRelay
import Hummingbird
import NIOCore

extension RelayNode {
    /// `GET /rooms/{room}/events` and `GET /events` (lobby).
    func addStreamRoutes(to router: Router<RelayRequestContext>) {
        router.get("/rooms/:room/events") { request, context in
            try await self.subscribe(room: try Self.room(context), request: request, context: context)
        }
        router.get("/events") { request, context in
            try await self.subscribe(room: .lobby, request: request, context: context)
        }
    }

    /// Opens a stream: registers with the hub first (so live messages queue up), replays what the
    /// client missed after its `Last-Event-ID`, then goes live with everything at or below the last
    /// replayed id dropped: no gap and no duplicate between replay and live.
    func subscribe(room: RoomName, request: Request, context: RelayRequestContext) async throws -> Response {
        let lastEventID = try Self.lastEventID(request)
        // Checked before the broker round trip below; the hub checks again when registering.
        guard !hub.isDraining else { throw APIError.draining }
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
        let channel = context.channel
        let output: ChannelStreamOutput
        do {
            output = try await ChannelStreamOutput.make(for: channel)
        } catch {
            // The connection is already gone, or is not a plain HTTP/1 one.
            logger.debug("cannot stream on this connection", metadata: ["error": "\(error)"])
            throw APIError.unavailable("This connection cannot carry a stream; retry shortly.")
        }
        let subscription: Subscription
        do {
            subscription = try hub.subscribe(room: room, after: resumeAfter, output: output)
        } catch .draining {
            throw APIError.draining
        } catch .atCapacity {
            metrics.connectionLimited.increment()
            throw APIError.unavailable("This node is at its connection limit; retry shortly or use another node.", retryAfter: 2)
        }

        // A client that leaves is noticed at once, not at the next heartbeat write: its place
        // (and the connection limit slot) is freed as soon as the connection closes.
        let hub = self.hub
        channel.closeFuture.whenComplete { _ in hub.unsubscribe(subscription) }

        var opening = SSE.preamble(retryMilliseconds: configuration.retryMilliseconds, node: configuration.nodeID)
        let replay: Replay
        do {
            replay = try await broker.replay(room: room, after: resumeAfter)
        } catch {
            hub.unsubscribe(subscription)
            logger.warning("cannot replay", metadata: ["room": "\(room)", "error": "\(error)"])
            throw APIError.unavailable("The room's history cannot be read now; retry shortly.")
        }
        if lastEventID != nil, replay.messagesLost {
            opening.writeImmutableBuffer(SSE.reset(oldest: replay.oldestRetained))
        }
        for message in replay.messages {
            opening.writeImmutableBuffer(message.frame)
        }
        let firstBytes = opening
        let liveAfter = replay.messages.last?.id ?? resumeAfter
        let headers: HTTPFields = [
            .contentType: "text/event-stream",
            .cacheControl: "no-cache",
            .xAccelBuffering: "no",
        ]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            defer { hub.unsubscribe(subscription) }
            // Through Hummingbird's writer (after the head); the live events the hub then writes
            // to the connection directly are queued on its event loop behind this write.
            try await writer.write(firstBytes)
            subscription.goLive(after: liveAfter)
            // One wait for the whole stream: a drain's `retry:` is written before it returns.
            _ = await subscription.closed()
            try await writer.finish(nil)
        })
    }

    /// The id to resume after: the `Last-Event-ID` header, else the `lastEventId` query parameter.
    static func lastEventID(_ request: Request) throws -> MessageID? {
        let text = request.headers[.lastEventID] ?? request.uri.queryParameters.get("lastEventId")
        guard let text, !text.isEmpty else { return nil }
        guard let id = MessageID(text) else {
            throw APIError.invalidField("Last-Event-ID: must be a message id of the form <ms>-<seq>")
        }
        return id
    }
}

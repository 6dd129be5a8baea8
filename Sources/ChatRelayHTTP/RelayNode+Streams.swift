import ChatRelay
import NIOCore
import RelayAccess

extension RelayNode {
    /// A stream, registered with the hub but not live yet, and what to write before it goes live.
    struct StreamOpening: Sendable {
        let subscription: Subscription
        /// The preamble, a reset if history was lost, and the replay: SSE bytes, not chunked.
        let firstBytes: ByteBuffer
        /// A stream of one room: hand to `goLive(after:)` once `firstBytes` are written.
        let liveAfter: MessageID
        /// A stream of several rooms: its position after `firstBytes`, for `goLive(with:)`.
        let framing: MultiRoomFraming?
        /// Who opened it (`--auth jwt`): the stream ends when the token expires.
        let identity: Identity?
        /// The replay was cut at its limit (`Replay.streamLimit`): the stream ends after
        /// `firstBytes` (which end with a short `retry:`), and the client resumes for the rest.
        let continues: Bool

        /// Ends the replay phase, once `firstBytes` are written: the stream goes live, or ends if
        /// it `continues` on the client's next connection.
        func goLive(hub: Hub) {
            if continues {
                hub.unsubscribe(subscription)
            } else if let framing {
                subscription.goLive(with: framing)
            } else {
                subscription.goLive(after: liveAfter)
            }
        }
    }

    /// Opens a stream of `rooms` on `output`'s connection: registers with the hub first (so live
    /// messages queue up), reads what the client missed after `lastEventID` in each room, and
    /// returns the opening to write. Going live after the last replayed id drops everything the
    /// replay already had: no gap and no duplicate between replay and live. The subscription ends
    /// when the connection closes.
    ///
    /// A stream of one room uses the messages' own ids; a stream of several writes its position
    /// in every room as each event's id (`MultiRoomFraming`).
    ///
    /// With `presence`, the stream gets `event: presence` of its rooms: first who is there, then
    /// who came and went. Its opener is a member of each room while it is open: the token's
    /// identity, or (`--auth none`) the `user` the client claims.
    ///
    /// A stream counts against its client's and its user's bounds (`--max-streams-per-client`,
    /// `--max-streams-per-user`) from before it registers until its connection closes.
    func openStream(
        rooms: [RoomName], lastEventID: String?, presence: StreamPresence, credentials: Credentials?, client: String,
        output: ChannelStreamOutput
    ) async throws(APIError) -> StreamOpening {
        guard !hub.isDraining else { throw APIError.draining }
        let given = try Self.streamPosition(lastEventID, rooms: rooms)
        let identity = try await authorize(credentials, .subscribe, rooms: rooms)
        let member = try presence.member(identity: identity, tokensRequired: access.requiresTokens)
        let slots = try holdStreamSlots(client: client, user: identity?.subject)
        do throws(APIError) {
            let opening = try await openStream(
                rooms: rooms, given: given, identity: identity, member: member, presence: presence, output: output)
            output.channel.closeFuture.whenComplete { _ in slots.release() }
            return opening
        } catch {
            slots.release()
            throw error
        }
    }

    /// A stream's places in its client's and its user's counts, held until `release`d.
    struct StreamSlots: Sendable {
        let client: String
        let user: String?
        let node: RelayNode

        func release() {
            node.streamsPerClient.release(client)
            if let user { node.streamsPerUser.release(user) }
        }
    }

    /// Takes a place for a new stream in `client`'s count and `user`'s, or `429` past either.
    private func holdStreamSlots(client: String, user: String?) throws(APIError) -> StreamSlots {
        guard streamsPerClient.acquire(client) else {
            metrics.refusedForClient[.streams]?.increment()
            throw APIError.clientLimit(
                "too_many_streams", "This client has \(streamsPerClient.limit) streams open on this node, its limit; close one first.")
        }
        if let user, !streamsPerUser.acquire(user) {
            streamsPerClient.release(client)
            metrics.refusedForClient[.userStreams]?.increment()
            throw APIError.clientLimit(
                "too_many_streams", "This user has \(streamsPerUser.limit) streams open on this node, its limit; close one first.")
        }
        return StreamSlots(client: client, user: user, node: self)
    }

    /// Registers the stream with the hub, reads its replay and returns its opening (the work of
    /// `openStream` once the stream's access and places are settled).
    private func openStream(
        rooms: [RoomName], given: [MessageID]?, identity: Identity?, member: Participant?, presence: StreamPresence,
        output: ChannelStreamOutput
    ) async throws(APIError) -> StreamOpening {
        // Every stream has a position in each room, even without Last-Event-ID: the room's newest
        // id, read before registering, so what is published in between is replayed, not lost.
        let broker = self.broker
        let logger = self.logger
        let resumeAfter: [MessageID]
        if let given {
            resumeAfter = given
        } else {
            do {
                resumeAfter = try await Self.eachRoom(rooms) { _, room in
                    do {
                        return try await broker.latestID(room: room) ?? .zero
                    } catch {
                        logger.warning("cannot open stream", metadata: ["room": "\(room)", "error": "\(error)"])
                        throw error
                    }
                }
            } catch {
                throw APIError.unavailable("The room cannot be read now; retry shortly.")
            }
        }
        let subscription: Subscription
        do {
            subscription = try hub.subscribe(rooms: rooms, after: resumeAfter, presence: presence.wanted, output: output)
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
        var framing = rooms.count > 1 ? MultiRoomFraming(rooms: rooms, start: resumeAfter) : nil
        var liveAfter = resumeAfter[0]
        let replays: [RoomReplay]
        do {
            replays = try await readReplays(rooms: rooms, after: resumeAfter)
        } catch {
            hub.unsubscribe(subscription)
            throw APIError.unavailable("The room's history cannot be read now; retry shortly.")
        }
        for (index, room) in rooms.enumerated() {
            for (part, replay) in replays[index].parts.enumerated() {
                // `0` asks for everything retained: a client that had nothing cannot have missed
                // it. A later part starts after a message this opening has: lost only if the
                // room was trimmed past it meanwhile.
                let lost = part == 0 ? given != nil && resumeAfter[index] > .zero && replay.messagesLost : replay.messagesLost
                if lost {
                    opening.writeImmutableBuffer(SSE.reset(oldest: replay.oldestRetained, room: framing == nil ? nil : room))
                }
                for message in replay.messages {
                    if framing != nil {
                        framing!.writeFrame(of: message, room: index, into: &opening)
                    } else {
                        opening.writeImmutableBuffer(message.frame)
                    }
                }
            }
            liveAfter = replays[index].lastID ?? resumeAfter[index]
        }
        // A room that filled its share may have more: the stream ends after this opening, with a
        // short retry, and the client's reconnection (its Last-Event-ID is where this one left
        // each room) replays the rest. Going live instead would skip what lies between.
        guard !replays.contains(where: \.cut) else {
            metrics.replaysContinued.increment()
            opening.writeImmutableBuffer(SSE.retry(milliseconds: Self.continuationRetryMilliseconds))
            return StreamOpening(
                subscription: subscription, firstBytes: opening, liveAfter: liveAfter, framing: framing, identity: identity,
                continues: true)
        }
        if presence.wanted {
            let closed = output.channel.closeFuture
            _ = try? await Self.eachRoom(rooms) { _, room in await self.watchPresence(room, until: closed) }
        }
        if let member { joinPresence(member, rooms: rooms, until: output.channel.closeFuture) }
        return StreamOpening(
            subscription: subscription, firstBytes: opening, liveAfter: liveAfter, framing: framing, identity: identity, continues: false)
    }

    /// The `retry:` of a stream that ends after part of its replay: its client comes back at once
    /// for the rest.
    static let continuationRetryMilliseconds = 10

    /// Runs `read` for every room at once and returns the results in the rooms' order: a stream
    /// of 100 rooms waits for about one round trip to Redis, not 100 in a row (the broker's
    /// concurrent commands share a connection's round trips). Child tasks keep the request's
    /// executor (its event loop). A stream of one room runs it inline. The first error is thrown
    /// and the other reads are cancelled.
    static func eachRoom<Result: Sendable>(
        _ rooms: [RoomName], _ read: @escaping @Sendable (Int, RoomName) async throws -> Result
    ) async throws -> [Result] {
        if rooms.count == 1 { return [try await read(0, rooms[0])] }
        return try await withThrowingTaskGroup(of: (Int, Result).self) { group in
            for (index, room) in rooms.enumerated() {
                group.addTask { (index, try await read(index, room)) }
            }
            var results = [Result?](repeating: nil, count: rooms.count)
            for try await (index, result) in group { results[index] = result }
            return results.compactMap { $0 }
        }
    }

    /// The `Last-Event-ID` header, else the `lastEventId` query parameter, as sent.
    static func lastEventID(header: String?, query: String?) -> String? {
        guard let text = header ?? query, !text.isEmpty else { return nil }
        return text
    }

    /// Where a stream of `rooms` starts, from the `Last-Event-ID` a client sent (nil: none): one
    /// id per room. A message id (or `0`) stands for every room; a stream of several rooms also
    /// takes the position its own events carry, but only for the same rooms in the same order.
    static func streamPosition(_ text: String?, rooms: [RoomName]) throws(APIError) -> [MessageID]? {
        guard let text else { return nil }
        if rooms.count > 1, StreamPosition.isPosition(text) {
            do {
                return try StreamPosition(parsing: text, rooms: rooms).ids
            } catch {
                throw APIError.invalidField("Last-Event-ID: \(error)")
            }
        }
        return Array(repeating: try messageID(text, field: "Last-Event-ID"), count: rooms.count)
    }

    /// The rooms of `GET /events`: its `room` parameters in order, each once (`lobby` when none),
    /// at most `--max-stream-rooms`.
    func streamRooms(_ target: RequestTarget) throws(APIError) -> [RoomName] {
        let limit = configuration.maxStreamRooms
        let names = target.values(of: "room", limit: limit + 1)
        guard !names.isEmpty else { return [.lobby] }
        var rooms: [RoomName] = []
        for name in names {
            guard let name, let room = RoomName(name) else { throw APIError.invalidRoom(name ?? "") }
            if !rooms.contains(room) { rooms.append(room) }
        }
        guard names.count <= limit else {
            throw APIError(.badRequest, code: "too_many_rooms", message: "A stream follows at most \(limit) rooms.")
        }
        return rooms
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

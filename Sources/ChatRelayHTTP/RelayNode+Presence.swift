import ChatRelay
import NIOCore
import RelayAccess

/// What a stream asks of presence: `?presence=1` for `event: presence`, and (`--auth none`)
/// `?user=` for the name its opener claims as a member.
struct StreamPresence: Sendable {
    /// The stream gets `event: presence` of its rooms.
    let wanted: Bool
    /// The `user` parameter, unchecked.
    let claimedUser: String?

    init(target: RequestTarget) {
        let flag = target.value(of: "presence")
        wanted = flag == "1" || flag == "true"
        claimedUser = target.value(of: "user")
    }

    /// Who the stream's opener is in its rooms: the token's identity; without access control,
    /// the `user` it claims (checked as a message's `user`), marked as claimed; else nobody.
    func member(identity: Identity?, tokensRequired: Bool) throws(APIError) -> Participant? {
        if let identity { return Participant(user: identity.subject, name: identity.name, verified: true) }
        guard !tokensRequired, let claimedUser else { return nil }
        do {
            return Participant(user: try MessageDraft.validatedUser(claimedUser), name: nil, verified: false)
        } catch {
            throw APIError.invalidField(error.description)
        }
    }
}

extension RelayNode {
    /// Makes `member` present in `rooms` until `closed` completes: its changes go to the broker in
    /// order (`PresenceService`).
    func joinPresence(_ member: Participant, rooms: [RoomName], until closed: EventLoopFuture<Void>) {
        let book = hub.presence
        let updates = presenceUpdates
        for room in rooms { updates.add(book.join(member, room: room)) }
        closed.whenComplete { _ in
            for room in rooms {
                if let entry = book.leave(member, room: room) { updates.add(entry) }
            }
        }
    }

    /// Follows `room`'s presence until `closed` completes, its view seeded from the broker when it
    /// is new here. The stream's first presence event is taken as it goes live
    /// (`Subscription.goLive`).
    func watchPresence(_ room: RoomName, until closed: EventLoopFuture<Void>) async {
        let book = hub.presence
        if book.watch(room) {
            do {
                book.seed(room, with: try await broker.presence(room: room))
            } catch {
                // Deliveries fill the view from now on.
                logger.warning("presence not read", metadata: ["room": "\(room)", "error": "\(error)"])
            }
        }
        closed.whenComplete { _ in book.unwatch(room) }
    }

    /// `GET /rooms/{room}/presence`: the room's members across the cluster, oldest first, at most
    /// `--presence-cap` of them, with the count of all.
    ///
    /// Requests for a room at the same time share one read. A room of more than `--presence-cap`
    /// members (its whole hash is read, and the answer sorts them all) is read at most once per
    /// presence interval per node, however often it is asked for: its answer is up to that old, as
    /// its presence events are. Smaller rooms are read afresh for every request.
    func presenceAnswer(room: RoomName) async throws(APIError) -> Answer {
        let (broker, logger, cap) = (self.broker, self.logger, configuration.presenceCap)
        return try await presenceAnswers.value(for: room) {
            let members: [PresenceMember]
            do {
                members = PresenceMember.merging(try await broker.presence(room: room))
            } catch {
                logger.warning("presence not read", metadata: ["room": "\(room)", "error": "\(error)"])
                return (.failure(APIError.unavailable("The room's presence cannot be read now; retry shortly.")), false)
            }
            var json = ByteBuffer()
            PresenceMember.writeOpening(room: room, count: members.count, into: &json)
            json.writeStaticString(",\"members\":")
            PresenceMember.writeJSON(members.prefix(cap), into: &json)
            json.writeString(",\"truncated\":\(members.count > cap)}")
            let answer = Answer(status: .ok, contentType: Answer.jsonType, body: json, headers: [("Cache-Control", "no-store")])
            return (.success(answer), members.count > cap)
        }
    }

    /// How many rooms' presence answers a node keeps at most.
    static let keptPresenceAnswers = 1024
}

import NIOCore

extension RedisBroker {
    /// Reads each room `owned` accepts after the position of its subscribers on this node and
    /// delivers what they missed: runs right after the subscriber that owns those rooms
    /// (re)subscribed, while it holds newer messages back. The command connections may still be
    /// reconnecting, so each read is retried for a few seconds. Returns false if the gap could not
    /// be filled: the subscriber then subscribes again and this runs again.
    func fillGaps(owned: @escaping @Sendable (RoomName) -> Bool) async -> Bool {
        await resyncPresence(owned: owned)
        let positions = await sink.resumePositions(of: owned)
        guard !positions.isEmpty else { return true }
        var filled = 0
        for (room, position) in positions {
            var after = position
            while true {
                let page: [StoredMessage]
                do {
                    page = try await readRetrying(room: room, after: after)
                } catch {
                    logger.warning("gap fill failed; subscribing again", metadata: ["room": "\(room)", "error": "\(error)"])
                    metrics.gapFillMessages.increment(by: Int64(filled))
                    return false
                }
                for message in page { sink.deliver(message) }
                filled += page.count
                guard page.count == Self.gapFillPage, let last = page.last else { break }
                after = last.id
            }
        }
        metrics.gapFillMessages.increment(by: Int64(filled))
        logger.info("gap filled", metadata: ["rooms": "\(positions.count)", "messages": "\(filled)"])
        return true
    }

    static let gapFillPage = 500

    /// Reads the presence of each room `owned` accepts that a local stream follows again: the
    /// changes sent while the subscription was down were missed. A failed read leaves the view
    /// as it is (deliveries go on from now).
    func resyncPresence(owned: @Sendable (RoomName) -> Bool) async {
        let book = sink.presence
        for room in book.watchedRoomNames where owned(room) {
            book.resyncing(room)
            do {
                book.resynced(room, with: try await presence(room: room))
            } catch {
                logger.warning("presence not read again", metadata: ["room": "\(room)", "error": "\(error)"])
            }
        }
    }

    /// One page of history after `id`, retried for up to 3 s while the command connection is still
    /// coming back.
    private func readRetrying(room: RoomName, after id: MessageID) async throws -> [StoredMessage] {
        let deadline = ContinuousClock.now + .seconds(3)
        while true {
            do {
                return try await history(room: room, after: id, limit: Self.gapFillPage)
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }
}

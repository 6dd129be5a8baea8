import ChatRelay

extension RelayNode {
    /// What a stream's opening replays of one room: the parts read (the first after the client's
    /// position, each next after the last message of the one before) and whether the room may
    /// have more (the last part filled its limit).
    struct RoomReplay: Sendable {
        var parts: [Replay] = []
        var cut = false

        /// The newest message replayed, if any.
        var lastID: MessageID? { parts.last { !$0.messages.isEmpty }?.messages.last?.id }
    }

    /// Reads what a stream of `rooms` missed after `positions`, at most `Replay.streamLimit`
    /// messages in all: first an equal share per room (each room listened to before it is read),
    /// then what the rooms that had less left unused, split between those that filled their
    /// share, for up to `replayRounds` rounds. Each round reads its rooms at once. So one busy room
    /// among quiet ones gets most of the limit, and no stream makes the node hold more than it.
    func readReplays(rooms: [RoomName], after positions: [MessageID]) async throws -> [RoomReplay] {
        let (broker, logger) = (self.broker, self.logger)
        var budget = Replay.streamLimit(history: configuration.history)
        var replays = [RoomReplay](repeating: RoomReplay(), count: rooms.count)
        var reading = Array(rooms.indices)
        for round in 0..<Self.replayRounds {
            // The first round gives every room at least one; the others only what is left.
            guard !reading.isEmpty, round == 0 || budget >= reading.count else { break }
            let limit = max(1, budget / reading.count)
            let starts = reading.map { replays[$0].lastID ?? positions[$0] }
            let parts = try await Self.eachRoom(reading.map { rooms[$0] }) { index, room in
                do {
                    // Live events of the room reach this node from here on; what came before is in the replay.
                    if round == 0 { try await broker.listen(room: room) }
                    return try await broker.replay(room: room, after: starts[index], limit: limit)
                } catch {
                    logger.warning("cannot replay", metadata: ["room": "\(room)", "error": "\(error)"])
                    throw error
                }
            }
            for (index, roomIndex) in reading.enumerated() {
                replays[roomIndex].parts.append(parts[index])
                replays[roomIndex].cut = parts[index].messages.count >= limit
                budget -= parts[index].messages.count
            }
            reading = reading.filter { replays[$0].cut }
        }
        return replays
    }

    /// Rounds of reading a stream's replay (`readReplays`).
    static let replayRounds = 3
}

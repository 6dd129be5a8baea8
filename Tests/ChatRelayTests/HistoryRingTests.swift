import ChatRelay
import Testing

func stored(_ ms: UInt64, _ seq: UInt64 = 0, room: RoomName = .lobby, text: String = "t") -> StoredMessage {
    StoredMessage(Message(id: MessageID(ms: ms, seq: seq), room: room, user: "u", text: text, timeMs: ms))
}

@Suite struct HistoryRingTests {
    func ring(capacity: Int, filledWith ids: ClosedRange<UInt64>) -> HistoryRing {
        var ring = HistoryRing(capacity: capacity)
        for ms in ids { ring.append(stored(ms)) }
        return ring
    }

    @Test func keepsTheNewestUpToCapacity() {
        let ring = ring(capacity: 5, filledWith: 1...12)
        #expect(ring.count == 5)
        #expect(ring.oldest == MessageID(ms: 8, seq: 0))
        #expect(ring.newest == MessageID(ms: 12, seq: 0))
        #expect(ring.lostBelow == MessageID(ms: 7, seq: 0))
        #expect(ring.latest(limit: 100).map(\.id.ms) == [8, 9, 10, 11, 12])
        #expect(ring.latest(limit: 2).map(\.id.ms) == [11, 12])
    }

    @Test func replaysEverythingAfterAnIdWithoutReset() {
        let ring = ring(capacity: 5, filledWith: 1...12)
        let replay = ring.replay(after: MessageID(ms: 9, seq: 0))
        #expect(!replay.messagesLost)
        #expect(replay.messages.map(\.id.ms) == [10, 11, 12])
        // An id between two messages, and the newest id, and one beyond it.
        #expect(ring.replay(after: MessageID(ms: 9, seq: 5)).messages.map(\.id.ms) == [10, 11, 12])
        #expect(ring.replay(after: MessageID(ms: 12, seq: 0)).messages.isEmpty)
        #expect(ring.replay(after: MessageID(ms: 99, seq: 0)).messages.isEmpty)
    }

    @Test func aReplayIsCutAtItsLimitAndSaysWhatWasLost() {
        let ring = ring(capacity: 5, filledWith: 1...12)
        #expect(ring.replay(after: MessageID(ms: 8, seq: 0), limit: 2).messages.map(\.id.ms) == [9, 10])
        let cut = ring.replay(after: MessageID(ms: 2, seq: 0), limit: 3)
        #expect(cut.messagesLost && cut.oldestRetained == MessageID(ms: 8, seq: 0))
        #expect(cut.messages.map(\.id.ms) == [8, 9, 10])
        #expect(ring.replay(after: .zero, limit: 0).messages.isEmpty)
    }

    /// A stream replays one more than a room retains: so one room is never cut.
    @Test func aStreamReplaysOneMoreThanARoomRetains() {
        #expect(Replay.streamLimit(history: 1000) == 1101)
        #expect(Replay.streamLimit(history: 10) == 12)
        #expect(Replay.streamLimit(history: 0) == 3)
    }

    @Test func resetsWhenTheGapCannotBeFilled() {
        let ring = ring(capacity: 5, filledWith: 1...12)
        // 7 was evicted: a client at 6 missed it.
        let replay = ring.replay(after: MessageID(ms: 6, seq: 0))
        #expect(replay.messagesLost)
        #expect(replay.oldestRetained == MessageID(ms: 8, seq: 0))
        #expect(replay.messages.map(\.id.ms) == [8, 9, 10, 11, 12])
        // A client at 7 (the newest evicted) missed nothing.
        #expect(!ring.replay(after: MessageID(ms: 7, seq: 0)).messagesLost)
        // Nothing evicted yet: no reset even from the very beginning.
        #expect(!self.ring(capacity: 50, filledWith: 1...12).replay(after: .zero).messagesLost)
    }

    @Test func aRoomThatBeganAfterALossResetsClientsFromBefore() {
        var ring = HistoryRing(capacity: 5)
        ring.append(stored(20))
        ring.markLost(below: MessageID(ms: 20, seq: 0))
        ring.append(stored(21))
        #expect(ring.replay(after: MessageID(ms: 19, seq: 0)).messagesLost)
        #expect(ring.replay(after: MessageID(ms: 19, seq: 0)).messages.map(\.id.ms) == [20, 21])
        #expect(!ring.replay(after: MessageID(ms: 20, seq: 0)).messagesLost)
        // Eviction moves the mark on; it never moves back.
        for ms in 22...30 { ring.append(stored(UInt64(ms))) }
        #expect(ring.lostBelow == MessageID(ms: 25, seq: 0))
        ring.markLost(below: MessageID(ms: 3, seq: 0))
        #expect(ring.lostBelow == MessageID(ms: 25, seq: 0))
    }

    @Test func pagesAfterAnId() {
        let ring = ring(capacity: 100, filledWith: 1...30)
        #expect(ring.messages(after: MessageID(ms: 10, seq: 0), limit: 3).map(\.id.ms) == [11, 12, 13])
        #expect(ring.messages(after: MessageID(ms: 28, seq: 0), limit: 10).map(\.id.ms) == [29, 30])
        #expect(ring.messages(after: .zero, limit: 2).map(\.id.ms) == [1, 2])
    }
}

import NIOCore
import Synchronization
import Testing

@testable import ChatRelay

final class RecordingSink: LiveEventSink {
    let received = Mutex<[StoredMessage]>([])
    func deliver(_ message: StoredMessage) { received.withLock { $0.append(message) } }
    func resumePositions(of include: @escaping @Sendable (RoomName) -> Bool) async -> [RoomName: MessageID] { [:] }
    func hasSubscribers(room: RoomName) -> Bool { false }
    let presence = PresenceBook(node: "test", cap: 100)
    var ids: [MessageID] { received.withLock { $0.map(\.id) } }
}

@Suite struct EmbeddedBrokerTests {
    @Test func publishStoresAssignsIncreasingIdsAndDeliversLive() async throws {
        let sink = RecordingSink()
        let broker = EmbeddedBroker(history: 3, sink: sink, clock: { 1000 })
        var ids: [MessageID] = []
        for index in 0..<5 {
            let outcome = try await broker.publish(MessageDraft(room: .lobby, user: "u", text: "m\(index)"), idempotency: nil)
            guard case .created(let message) = outcome else {
                Issue.record("expected created")
                return
            }
            ids.append(message.id)
        }
        #expect(ids.map(\.description) == ["1000-0", "1000-1", "1000-2", "1000-3", "1000-4"])
        #expect(sink.ids == ids)
        let history = try await broker.history(room: .lobby, after: nil, limit: 50)
        #expect(history.map(\.id) == Array(ids.suffix(3)))
        let replay = try await broker.replay(room: .lobby, after: ids[0], limit: 100)
        #expect(replay.messagesLost)
        #expect(replay.messages.map(\.id) == Array(ids.suffix(3)))
    }

    @Test func aRepeatedIdempotencyKeyStoresNothingAndAnotherMessageUnderItIsRefused() async throws {
        let sink = RecordingSink()
        let broker = EmbeddedBroker(history: 10, sink: sink)
        let draft = MessageDraft(room: .lobby, user: "u", text: "once")
        let key = Idempotency(key: "key-1", poster: "sub alice", draft: draft)
        let first = try await broker.publish(draft, idempotency: key)
        let again = try await broker.publish(draft, idempotency: key)
        guard case .created(let stored) = first, case .duplicate(let duplicate) = again else {
            Issue.record("expected created then duplicate")
            return
        }
        #expect(stored.id == duplicate.id)
        // The answer to the retry is the first message, byte for byte, rebuilt from its record.
        #expect(String(buffer: duplicate.json) == String(buffer: stored.json))
        #expect(sink.ids.count == 1)
        // The same key with another text: refused, nothing stored.
        let changed = MessageDraft(room: .lobby, user: "u", text: "changed")
        guard
            case .keyReused = try await broker.publish(changed, idempotency: Idempotency(key: "key-1", poster: "sub alice", draft: changed))
        else {
            Issue.record("a key stands for one message")
            return
        }
        #expect(sink.ids.count == 1)
        // The same key of another poster, or in another room, is another message.
        guard case .created = try await broker.publish(draft, idempotency: Idempotency(key: "key-1", poster: "sub bob", draft: draft))
        else {
            Issue.record("a key is its poster's")
            return
        }
        let elsewhere = MessageDraft(room: RoomName("x")!, user: "u", text: "t")
        guard
            case .created = try await broker.publish(
                elsewhere, idempotency: Idempotency(key: "key-1", poster: "sub alice", draft: elsewhere))
        else {
            Issue.record("a key is per room")
            return
        }
    }
}

/// `--history-ttl` on the embedded broker: idle rooms are forgotten, and a client resuming from
/// before is told so.
@Suite struct EmbeddedBrokerExpiryTests {
    final class Clock: Sendable {
        let now = Mutex<UInt64>(1_000_000)
        func advance(milliseconds: UInt64) { now.withLock { $0 += milliseconds } }
        var read: @Sendable () -> UInt64 { { [self] in now.withLock { $0 } } }
    }

    func publish(_ broker: EmbeddedBroker, _ room: RoomName, _ text: String = "t") async throws -> MessageID {
        guard case .created(let message) = try await broker.publish(MessageDraft(room: room, user: "u", text: text), idempotency: nil)
        else { throw BrokerError.unavailable("not created") }
        return message.id
    }

    @Test func idleRoomsAreSweptAndActiveOnesKept() async throws {
        let clock = Clock()
        let broker = EmbeddedBroker(history: 10, historyTTL: .seconds(60), sink: RecordingSink(), clock: clock.read)
        for index in 0..<3000 { _ = try await publish(broker, RoomName("idle-\(index)")!) }
        clock.advance(milliseconds: 30_000)
        let active = RoomName("active")!
        _ = try await publish(broker, active)
        #expect(broker.sweepExpired() == 0)
        clock.advance(milliseconds: 30_001)
        // The idle rooms' last message is 60.001 s old now; the active one's 30.001 s.
        #expect(broker.sweepExpired() == 3000)
        #expect(broker.roomCount == 1)
        #expect(try await broker.history(room: RoomName("idle-7")!, after: nil, limit: 10).isEmpty)
        #expect(try await broker.history(room: active, after: nil, limit: 10).count == 1)
        clock.advance(milliseconds: 60_000)
        #expect(broker.sweepExpired() == 1)
        #expect(broker.roomCount == 0)
    }

    @Test func aClientResumingInAnExpiredRoomGetsResetNeverSilence() async throws {
        let clock = Clock()
        let broker = EmbeddedBroker(history: 10, historyTTL: .seconds(1), sink: RecordingSink(), clock: clock.read)
        let room = RoomName("r")!
        let first = try await publish(broker, room)
        let second = try await publish(broker, room)
        #expect(!(try await broker.replay(room: room, after: first, limit: 100)).messagesLost)
        clock.advance(milliseconds: 2000)
        broker.sweepExpired()
        // The room is gone: whatever came after the client's id is gone with it.
        let gone = try await broker.replay(room: room, after: second, limit: 100)
        #expect(gone.messagesLost)
        #expect(gone.messages.isEmpty)
        #expect(gone.oldestRetained == nil)
        // The room starts again: a client from before it gets reset and what is there now.
        let third = try await publish(broker, room)
        let resumed = try await broker.replay(room: room, after: first, limit: 100)
        #expect(resumed.messagesLost)
        #expect(resumed.messages.map(\.id) == [third])
        #expect(resumed.oldestRetained == third)
        // A client that has the new room's message missed nothing.
        #expect(!(try await broker.replay(room: room, after: third, limit: 100)).messagesLost)
    }

    @Test func withoutATTLNothingIsSwept() async throws {
        let clock = Clock()
        let broker = EmbeddedBroker(history: 10, sink: RecordingSink(), clock: clock.read)
        _ = try await publish(broker, RoomName("r")!)
        clock.advance(milliseconds: 365 * 86_400_000)
        #expect(broker.sweepExpired() == 0)
        #expect(broker.roomCount == 1)
    }
}

/// `--history-memory` on the embedded broker: the rooms' history stays within its budget by
/// forgetting the least recently used rooms, a client resuming in one gets `reset`, and the room
/// being written to keeps the message it was just given.
@Suite struct EmbeddedBrokerMemoryTests {
    static func publish(_ broker: EmbeddedBroker, _ room: String, _ text: String) async throws -> MessageID {
        guard
            case .created(let message) = try await broker.publish(
                MessageDraft(room: RoomName(room)!, user: "u", text: text), idempotency: nil)
        else { throw BrokerError.unavailable("not created") }
        return message.id
    }

    /// What a message of `text` in `room` costs in history.
    static func cost(_ text: String, room: String) -> Int {
        var ring = HistoryRing(capacity: 1)
        ring.append(
            StoredMessage(Message(id: MessageID(ms: 1_000_000, seq: 0), room: RoomName(room)!, user: "u", text: text, timeMs: 1_000_000)))
        return ring.bytes
    }

    @Test func aStoredMessageCostsItsBytesAndASmallConstant() {
        var random = SystemRandomNumberGenerator()
        let pieces = ["a", "é", "\"", "\\", "\n", "\t", "\u{1}", "\u{2028}", "\u{FEFF}", "😀", " "]
        for _ in 0..<2000 {
            let text = (0..<Int.random(in: 1...300, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined()
            let message = Message(
                id: MessageID(ms: 1_764_000_000_000, seq: 7), room: .lobby, user: "ü\"ser", name: "N\tame", text: text,
                timeMs: 1_764_000_000_000)
            let stored = StoredMessage(message)
            // The buffer was asked for the size it needed: the JSON's length is known before it is written.
            #expect(
                stored.json.readableBytes
                    == Message.jsonLength(id: message.id, room: message.room, user: message.user, name: message.name, text: text))
            // History keeps the JSON's bytes and a constant, and gives the same message back.
            var ring = HistoryRing(capacity: 2)
            ring.append(stored)
            #expect(ring.bytes == stored.json.readableBytes + 64)
            #expect(String(buffer: ring[0].chunk) == String(buffer: stored.chunk))
        }
        // A stored 4 KB message costs 4 KB and a little, not twice it.
        let cost = Self.cost(String(repeating: "x", count: 4096), room: "lobby")
        #expect(cost < 4096 + 200, "a 4 KB message costs \(cost) bytes")
    }

    @Test func theLeastRecentlyUsedRoomsGoFirstAndTheirClientsAreToldSo() async throws {
        let text = String(repeating: "x", count: 1000)
        let cost = Self.cost(text, room: "room-0000")
        // Room for ten rooms of two messages each.
        let broker = EmbeddedBroker(history: 10, historyMemory: 20 * cost + cost / 2, sink: RecordingSink(), clock: { 1_000_000 })
        var first: [MessageID] = []
        for index in 0..<10 {
            first.append(try await Self.publish(broker, "room-\(index)", text))
            _ = try await Self.publish(broker, "room-\(index)", text)
        }
        #expect(broker.roomCount == 10)
        // room-0 is read: room-1 is now the least recently used.
        _ = try await broker.history(room: RoomName("room-0")!, after: nil, limit: 10)
        _ = try await Self.publish(broker, "room-10", text)
        #expect(broker.roomCount == 10)
        #expect(try await broker.history(room: RoomName("room-1")!, after: nil, limit: 10).isEmpty)
        #expect(try await broker.history(room: RoomName("room-0")!, after: nil, limit: 10).count == 2)
        #expect(broker.historyBytes <= 20 * cost + cost / 2)
        // A client that was in the forgotten room is told it missed something.
        let replay = try await broker.replay(room: RoomName("room-1")!, after: first[1], limit: 100)
        #expect(replay.messagesLost)
        // Many rooms later, the bound holds and so does the recency queue's.
        for index in 11..<3000 { _ = try await Self.publish(broker, "room-\(index)", text) }
        #expect(broker.historyBytes <= 20 * cost + cost / 2)
        #expect(broker.roomCount <= 21)
    }

    @Test func aRoomLargerThanTheBudgetKeepsItsNewestMessages() async throws {
        let text = String(repeating: "y", count: 1000)
        let cost = Self.cost(text, room: "big")
        // (A little over five: these ids are longer than the one the cost was taken with.)
        let broker = EmbeddedBroker(history: 100, historyMemory: 5 * cost + 100, sink: RecordingSink(), clock: { 1_000_000 })
        var ids: [MessageID] = []
        for _ in 0..<20 { ids.append(try await Self.publish(broker, "big", text)) }
        let kept = try await broker.history(room: RoomName("big")!, after: nil, limit: 100).map(\.id)
        #expect(kept == Array(ids.suffix(5)))
        #expect(try await broker.replay(room: RoomName("big")!, after: ids[0], limit: 100).messagesLost)
        #expect(try await !broker.replay(room: RoomName("big")!, after: ids[15], limit: 100).messagesLost)
    }
}

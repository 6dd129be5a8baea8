import ChatRelay
import NIOCore
import Synchronization
import Testing

final class RecordingSink: LiveEventSink {
    let received = Mutex<[StoredMessage]>([])
    func deliver(_ message: StoredMessage) { received.withLock { $0.append(message) } }
    func deliver(_ message: StoredMessage, on loop: any EventLoop) { Issue.record("the embedded broker delivers once per node") }
    func resumePositions(on loop: any EventLoop) async -> [RoomName: MessageID] { [:] }
    var ids: [MessageID] { received.withLock { $0.map(\.id) } }
}

@Suite struct EmbeddedBrokerTests {
    @Test func publishStoresAssignsIncreasingIdsAndDeliversLive() async throws {
        let sink = RecordingSink()
        let broker = EmbeddedBroker(history: 3, sink: sink, clock: { 1000 })
        var ids: [MessageID] = []
        for index in 0..<5 {
            let outcome = try await broker.publish(MessageDraft(room: .lobby, user: "u", text: "m\(index)"), idempotencyKey: nil)
            guard case .created(let message) = outcome else { Issue.record("expected created"); return }
            ids.append(message.id)
        }
        #expect(ids.map(\.description) == ["1000-0", "1000-1", "1000-2", "1000-3", "1000-4"])
        #expect(sink.ids == ids)
        let history = try await broker.history(room: .lobby, after: nil, limit: 50)
        #expect(history.map(\.id) == Array(ids.suffix(3)))
        let replay = try await broker.replay(room: .lobby, after: ids[0])
        #expect(replay.messagesLost)
        #expect(replay.messages.map(\.id) == Array(ids.suffix(3)))
    }

    @Test func aRepeatedIdempotencyKeyStoresNothing() async throws {
        let sink = RecordingSink()
        let broker = EmbeddedBroker(history: 10, sink: sink)
        let draft = MessageDraft(room: .lobby, user: "u", text: "once")
        let first = try await broker.publish(draft, idempotencyKey: "key-1")
        let again = try await broker.publish(MessageDraft(room: .lobby, user: "u", text: "changed"), idempotencyKey: "key-1")
        guard case .created(let stored) = first, case .duplicate(let duplicate) = again else {
            Issue.record("expected created then duplicate")
            return
        }
        #expect(stored.id == duplicate.id)
        #expect(String(buffer: duplicate.json).contains("once"))
        #expect(sink.ids.count == 1)
        // The same key in another room is another message.
        guard case .created = try await broker.publish(MessageDraft(room: RoomName("x")!, user: "u", text: "t"), idempotencyKey: "key-1") else {
            Issue.record("a key is per room")
            return
        }
    }
}

import ChatRelay
import Synchronization
import Testing

final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

@Suite struct HubTests {
    let room = RoomName("r")!
    let other = RoomName("o")!

    func makeHub(buffer: Int = 16, maxConnections: Int = 100) -> Hub {
        Hub(subscriberBuffer: buffer, maxConnections: maxConnections, metrics: .discarding)
    }

    func ids(_ next: Subscription.Next) -> [UInt64] {
        if case .messages(let batch) = next { return batch.map(\.id.ms) }
        return []
    }

    @Test func deliversToTheRoomsSubscribersOnlyAndSharesTheBytes() async throws {
        let hub = makeHub()
        let a = try hub.subscribe(room: room) {}
        let b = try hub.subscribe(room: room) {}
        let c = try hub.subscribe(room: other) {}
        for s in [a, b, c] { s.goLive(after: nil) }
        let message = stored(1, room: room)
        hub.deliver(message)
        let nextA = await a.next()
        let nextB = await b.next()
        #expect(ids(nextA) == [1])
        #expect(ids(nextB) == [1])
        #expect(c.pendingCount == 0)
        // The same storage, not a copy per subscriber.
        if case .messages(let batchA) = nextA, case .messages(let batchB) = nextB {
            batchA[0].frame.withUnsafeReadableBytes { pa in
                batchB[0].frame.withUnsafeReadableBytes { pb in #expect(pa.baseAddress == pb.baseAddress) }
            }
        }
    }

    @Test func aBurstIsTakenInOneBatchInOrder() async throws {
        let hub = makeHub()
        let s = try hub.subscribe(room: room) {}
        s.goLive(after: nil)
        for ms in 1...5 { hub.deliver(stored(UInt64(ms), room: room)) }
        #expect(ids(await s.next()) == [1, 2, 3, 4, 5])
    }

    @Test func replayFloorDropsWhatWasAlreadySent() async throws {
        let hub = makeHub()
        let s = try hub.subscribe(room: room) {}
        // Live messages arrive while the replay (up to 3) is being written.
        for ms in 2...5 { hub.deliver(stored(UInt64(ms), room: room)) }
        s.goLive(after: MessageID(ms: 3, seq: 0))
        #expect(ids(await s.next()) == [4, 5])
        // A late duplicate (e.g. from a gap fill) is dropped too.
        hub.deliver(stored(4, room: room))
        hub.deliver(stored(6, room: room))
        #expect(ids(await s.next()) == [6])
    }

    @Test func aSubscriberThatCannotKeepUpIsDisconnected() async throws {
        let hub = makeHub(buffer: 4)
        let aborted = Flag()
        let slow = try hub.subscribe(room: room) { aborted.set() }
        let fast = try hub.subscribe(room: room) {}
        slow.goLive(after: nil)
        fast.goLive(after: nil)
        for ms in 1...4 {
            hub.deliver(stored(UInt64(ms), room: room))
            #expect(ids(await fast.next()) == [UInt64(ms)])
        }
        #expect(!aborted.isSet)
        hub.deliver(stored(5, room: room))
        #expect(aborted.isSet)
        #expect(slow.closeReason == .slow)
        #expect(hub.connectionCount == 1)
        guard case .closed(.slow) = await slow.next() else {
            Issue.record("the slow subscriber should be told it is closed")
            return
        }
        #expect(ids(await fast.next()) == [5])
    }

    @Test func refusesBeyondTheConnectionLimitAndWhileDraining() throws {
        let hub = makeHub(maxConnections: 2)
        let a = try hub.subscribe(room: room) {}
        _ = try hub.subscribe(room: room) {}
        #expect(throws: Hub.SubscribeRefusal.atCapacity) { try hub.subscribe(room: room) {} }
        hub.unsubscribe(a)
        hub.unsubscribe(a)  // twice is harmless
        #expect(hub.connectionCount == 1)
        _ = try hub.subscribe(room: room) {}
        _ = hub.beginDrain()
        #expect(throws: Hub.SubscribeRefusal.draining) { try hub.subscribe(room: other) {} }
    }

    @Test func drainEndsEveryStreamWithARetryDelay() async throws {
        let hub = makeHub()
        let subscriptions = try (0..<4).map { _ in try hub.subscribe(room: room) {} }
        for s in subscriptions { s.goLive(after: nil) }
        let drained = Task { await hub.drain(spread: .milliseconds(40), retry: 500...900, deadline: .seconds(5)) }
        for s in subscriptions {
            guard case .closed(.draining(let retry)) = await s.next() else {
                Issue.record("expected a draining close")
                continue
            }
            #expect((500...900).contains(retry))
            hub.unsubscribe(s)
        }
        await drained.value
        #expect(hub.connectionCount == 0)
    }

    @Test func idleSubscribersGetHeartbeats() async throws {
        let hub = makeHub()
        let s = try hub.subscribe(room: room) {}
        s.goLive(after: nil)
        let interval = Duration.seconds(15)
        // Not idle for long enough: nothing.
        hub.heartbeat(interval: interval, now: MonotonicClock.nanoseconds() + 1_000_000_000)
        #expect(s.pendingCount == 0)
        hub.heartbeat(interval: interval, now: MonotonicClock.nanoseconds() + 16_000_000_000)
        guard case .heartbeat = await s.next() else {
            Issue.record("expected a heartbeat")
            return
        }
    }

    @Test func cancellingTheWriterEndsTheWait() async throws {
        let hub = makeHub()
        let s = try hub.subscribe(room: room) {}
        s.goLive(after: nil)
        let waiter = Task { await s.next() }
        try await Task.sleep(for: .milliseconds(20))
        waiter.cancel()
        guard case .closed = await waiter.value else {
            Issue.record("a cancelled writer should see the stream closed")
            return
        }
    }
}

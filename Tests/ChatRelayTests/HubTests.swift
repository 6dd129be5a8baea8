import Dispatch
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import ChatRelay

@Suite struct HubTests {
    let room = RoomName("r")!
    let other = RoomName("o")!
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)

    func makeHub(buffer: Int = 16, maxConnections: Int = 100) -> Hub {
        Hub(subscriberBuffer: buffer, maxConnections: maxConnections, metrics: .discarding)
    }

    func output(_ loop: Int = 0) -> RecordingOutput {
        RecordingOutput(eventLoop: Array(Self.group.makeIterator())[loop])
    }

    @Test func deliversToTheRoomsSubscribersOnlyAndSharesTheBytes() async throws {
        let hub = makeHub()
        let (oa, ob, oc) = (output(0), output(1), output(0))
        for (output, room) in [(oa, room), (ob, room), (oc, other)] {
            try hub.subscribe(room: room, output: output).goLive(after: nil)
        }
        hub.deliver(stored(1, room: room))
        try await oa.settle { oa.messageIDs == [1] }
        try await ob.settle { ob.messageIDs == [1] }
        try await oc.settle()
        #expect(oa.messageIDs == [1])
        #expect(ob.messageIDs == [1])
        #expect(oc.written.isEmpty)
        // The same storage on both event loops, not a copy per subscriber.
        oa.written[0].withUnsafeReadableBytes { pa in
            ob.written[0].withUnsafeReadableBytes { pb in #expect(pa.baseAddress == pb.baseAddress) }
        }
    }

    @Test func writesEachEventAsAnHTTPChunkOfItsFrame() async throws {
        let hub = makeHub()
        let out = output()
        try hub.subscribe(room: room, output: out).goLive(after: nil)
        let message = stored(7, room: room)
        hub.deliver(message)
        try await out.settle { !out.written.isEmpty }
        let frame = String(buffer: message.frame)
        #expect(out.text == String(frame.utf8.count, radix: 16) + "\r\n" + frame + "\r\n")
    }

    @Test func aBurstIsWrittenInOrderWithOneFlushPerSubscriber() async throws {
        let hub = makeHub()
        let out = output()
        try hub.subscribe(room: room, output: out).goLive(after: nil)
        try await out.settle()
        let flushesBefore = out.flushes
        // Hold the loop while the burst is posted, so it is taken as one batch.
        let gate = DispatchSemaphore(value: 0)
        out.eventLoop.execute { gate.wait() }
        for ms in 1...5 { hub.deliver(stored(UInt64(ms), room: room)) }
        gate.signal()
        try await out.settle { out.messageIDs.count == 5 }
        #expect(out.messageIDs == [1, 2, 3, 4, 5])
        #expect(out.flushes == flushesBefore + 1)
    }

    @Test func anEventDeliveredAfterSubscribeReachesTheSubscriberWhileItsLoopIsBehind() async throws {
        let hub = makeHub()
        // Another subscriber keeps the room routed to loop 0.
        let early = output(0)
        try hub.subscribe(room: room, output: early).goLive(after: nil)
        try await early.settle()
        // The loop is busy: event 1's fan-out waits behind the gate, and so does everything the
        // hub posts to the loop from now on.
        let gate = DispatchSemaphore(value: 0)
        early.eventLoop.execute { gate.wait() }
        hub.deliver(stored(1, room: room))
        let out = output(0)
        let subscription = try hub.subscribe(room: room, after: MessageID(ms: 1, seq: 0), output: out)
        // Delivered after subscribe returned: its replay may have been read before it was stored,
        // so it must come live, although the loop takes it in the same batch as event 1.
        hub.deliver(stored(2, room: room))
        gate.signal()
        subscription.goLive(after: MessageID(ms: 1, seq: 0))
        try await out.settle { out.messageIDs == [2] }
        #expect(out.messageIDs == [2])
        try await early.settle { early.messageIDs == [1, 2] }
        #expect(early.messageIDs == [1, 2])
    }

    @Test func aLargeFanOutLetsOtherTasksRunBetweenTurnsAndKeepsOrder() async throws {
        let hub = makeHub(maxConnections: 1000)
        let count = LoopFanout.writesPerTurn * 2 + 10
        let outputs = (0..<count).map { _ in output(0) }
        for out in outputs { try hub.subscribe(room: room, output: out).goLive(after: nil) }
        try await outputs[0].settle()
        let loop = outputs[0].eventLoop
        let gate = DispatchSemaphore(value: 0)
        loop.execute { gate.wait() }
        hub.deliver(stored(1, room: room))
        // Queued behind the first turn of event 1: it runs before the last subscriber has it, and
        // event 2, delivered then, reaches every subscriber after event 1.
        let writtenWhenProbed = Mutex(-1)
        loop.execute {
            writtenWhenProbed.withLock { $0 = outputs.filter { !$0.written.isEmpty }.count }
            hub.deliver(stored(2, room: room))
        }
        gate.signal()
        try await outputs[0].settle { outputs.allSatisfy { $0.messageIDs.count == 2 } }
        let probed = writtenWhenProbed.withLock { $0 }
        #expect(probed == LoopFanout.writesPerTurn)
        #expect(outputs.allSatisfy { $0.messageIDs == [1, 2] })
    }

    @Test func replayFloorDropsWhatWasAlreadySent() async throws {
        let hub = makeHub()
        let out = output()
        let s = try hub.subscribe(room: room, after: MessageID(ms: 1, seq: 0), output: out)
        // Live messages arrive while the replay (up to 3) is being written; 1 is below the start.
        for ms in 1...5 { hub.deliver(stored(UInt64(ms), room: room)) }
        try await out.settle()
        #expect(out.written.isEmpty)
        s.goLive(after: MessageID(ms: 3, seq: 0))
        try await out.settle { out.messageIDs == [4, 5] }
        // A late duplicate (e.g. from a gap fill) is dropped too.
        hub.deliver(stored(4, room: room))
        hub.deliver(stored(6, room: room))
        try await out.settle { out.messageIDs.count >= 3 }
        #expect(out.messageIDs == [4, 5, 6])
    }

    @Test func aSubscriberThatCannotKeepUpIsDisconnected() async throws {
        let hub = makeHub(buffer: 4)
        let slowOutput = output(0)
        let fastOutput = output(1)
        let slow = try hub.subscribe(room: room, output: slowOutput)
        let fast = try hub.subscribe(room: room, output: fastOutput)
        slow.goLive(after: nil)
        fast.goLive(after: nil)
        // Both loops have run goLive before the first event: events queued for a stream still
        // in its replay count against the same buffer, and a busy loop would drop `fast` too.
        try await slowOutput.settle()
        try await fastOutput.settle()
        slowOutput.isWritable = false
        for ms in 1...4 { hub.deliver(stored(UInt64(ms), room: room)) }
        try await slowOutput.settle { slowOutput.messageIDs.count == 4 }
        #expect(!slowOutput.isClosed)
        #expect(hub.connectionCount == 2)
        hub.deliver(stored(5, room: room))
        try await slowOutput.settle { slowOutput.isClosed }
        #expect(slowOutput.isClosed)
        #expect(slow.closeReason == .slow)
        #expect(await slow.closed() == .slow)
        #expect(hub.connectionCount == 1)
        try await fastOutput.settle { fastOutput.messageIDs.count == 5 }
        #expect(fastOutput.messageIDs == [1, 2, 3, 4, 5])
        #expect(fast.closeReason == nil)
    }

    @Test func aSubscriberWhoseReplayTakesTooLongIsDisconnected() async throws {
        let hub = makeHub(buffer: 2)
        let out = output()
        let s = try hub.subscribe(room: room, output: out)
        for ms in 1...3 { hub.deliver(stored(UInt64(ms), room: room)) }
        #expect(await s.closed() == .slow)
        #expect(out.isClosed)
        #expect(hub.connectionCount == 0)
    }

    @Test func refusesBeyondTheConnectionLimitAndWhileDraining() throws {
        let hub = makeHub(maxConnections: 2)
        let a = try hub.subscribe(room: room, output: output())
        _ = try hub.subscribe(room: room, output: output())
        #expect(throws: Hub.SubscribeRefusal.atCapacity) { try hub.subscribe(room: room, output: output()) }
        hub.unsubscribe(a)
        hub.unsubscribe(a)  // twice is harmless
        #expect(hub.connectionCount == 1)
        _ = try hub.subscribe(room: room, output: output())
        _ = hub.beginDrain()
        #expect(throws: Hub.SubscribeRefusal.draining) { try hub.subscribe(room: other, output: output()) }
    }

    @Test func anUnsubscribedStreamGetsNothingMore() async throws {
        let hub = makeHub()
        let out = output()
        let s = try hub.subscribe(room: room, output: out)
        s.goLive(after: nil)
        hub.deliver(stored(1, room: room))
        try await out.settle { out.messageIDs == [1] }
        hub.unsubscribe(s)
        #expect(await s.closed() == .finished)
        hub.deliver(stored(2, room: room))
        try await out.settle()
        #expect(out.messageIDs == [1])
    }

    @Test func drainEndsEveryStreamWithARetryDelay() async throws {
        let hub = makeHub()
        let outputs = (0..<4).map { output($0 % 2) }
        let subscriptions = try outputs.map { try hub.subscribe(room: room, output: $0) }
        for s in subscriptions { s.goLive(after: nil) }
        let drained = Task { await hub.drain(spread: .milliseconds(40), retry: 500...900, deadline: .seconds(5)) }
        for (s, out) in zip(subscriptions, outputs) {
            guard case .draining(let retry) = await s.closed() else {
                Issue.record("expected a draining close")
                continue
            }
            #expect((500...900).contains(retry))
            #expect(out.text.hasSuffix("retry: \(retry)\n\n\r\n"))
            hub.unsubscribe(s)
        }
        await drained.value
        #expect(hub.connectionCount == 0)
    }

    @Test func idleSubscribersGetHeartbeats() async throws {
        let hub = makeHub()
        let out = output()
        try hub.subscribe(room: room, output: out).goLive(after: nil)
        let interval = Duration.seconds(15)
        // Not idle for long enough: nothing.
        hub.heartbeat(interval: interval, now: MonotonicClock.nanoseconds() + 1_000_000_000)
        try await out.settle()
        #expect(out.written.isEmpty)
        hub.heartbeat(interval: interval, now: MonotonicClock.nanoseconds() + 16_000_000_000)
        try await out.settle { !out.written.isEmpty }
        #expect(out.written == [SSE.heartbeatChunk])
    }

    /// A stream whose connection stays above its high-water mark from heartbeat to heartbeat,
    /// with nothing else to write (its client stopped reading), is closed as slow at the limit;
    /// a heartbeat that finds it writable again, or an event written while it is, starts the count over.
    @Test func aStreamStalledForSeveralHeartbeatsIsClosedAsSlow() async throws {
        let hub = makeHub()
        let out = output()
        let s = try hub.subscribe(room: room, output: out)
        s.goLive(after: nil)
        try await out.settle()
        let start = MonotonicClock.nanoseconds()
        var round: UInt64 = 0
        func beat() async throws {
            round += 1
            hub.heartbeat(interval: .seconds(15), now: start + round * 16_000_000_000)
            try await out.settle()
        }
        out.isWritable = false
        for _ in 1..<Subscription.stalledHeartbeatLimit { try await beat() }
        out.isWritable = true
        try await beat()
        out.isWritable = false
        for _ in 1..<Subscription.stalledHeartbeatLimit { try await beat() }
        // An event written while it is writable starts the count over too.
        out.isWritable = true
        hub.deliver(stored(1, room: room))
        try await out.settle { out.messageIDs == [1] }
        out.isWritable = false
        for _ in 1..<Subscription.stalledHeartbeatLimit { try await beat() }
        #expect(!out.isClosed)
        #expect(hub.connectionCount == 1)
        try await beat()
        #expect(out.isClosed)
        #expect(s.closeReason == .slow)
        #expect(hub.connectionCount == 0)
    }

    /// A gap fill's messages and the live ones held while it ran can meet in one batch: each is
    /// written once, in id order.
    @Test func overlappingEventsInOneBatchAreWrittenOnce() async throws {
        let hub = makeHub()
        let out = output(0)
        try hub.subscribe(room: room, output: out).goLive(after: nil)
        try await out.settle()
        // Posted from the loop itself, so the fan-out takes them as one batch.
        let room = self.room
        try await out.eventLoop.submit {
            for id in [1, 2, 3, 2, 3, 4, 4, 5] { hub.deliver(stored(UInt64(id), room: room)) }
        }.get()
        try await out.settle { out.messageIDs.last == 5 }
        #expect(out.messageIDs == [1, 2, 3, 4, 5])
    }

    @Test func resumePositionsAreEachRoomsLeastAdvancedSubscriberOnAnyLoop() async throws {
        let hub = makeHub()
        let behind = output(0)
        let ahead = output(0)
        let elsewhere = output(1)
        try hub.subscribe(room: room, after: MessageID(ms: 3, seq: 0), output: behind).goLive(after: nil)
        try hub.subscribe(room: room, after: MessageID(ms: 9, seq: 0), output: ahead).goLive(after: nil)
        try hub.subscribe(room: other, after: MessageID(ms: 5, seq: 1), output: ahead).goLive(after: nil)
        try hub.subscribe(room: room, after: MessageID(ms: 4, seq: 0), output: elsewhere).goLive(after: nil)
        try await behind.settle()
        try await elsewhere.settle()
        #expect(await hub.resumePositions { _ in true } == [room: MessageID(ms: 3, seq: 0), other: MessageID(ms: 5, seq: 1)])
        // Only the rooms asked for (those whose channel a broker's subscriber owns).
        let only = room
        #expect(await hub.resumePositions { $0 == only } == [room: MessageID(ms: 3, seq: 0)])
        #expect(hub.hasSubscribers(room: other))
        #expect(!hub.hasSubscribers(room: RoomName("nobody")!))
    }

    @Test func cancellingTheWaitingHandlerEndsTheStream() async throws {
        let hub = makeHub()
        let s = try hub.subscribe(room: room, output: output())
        s.goLive(after: nil)
        let waiter = Task { await s.closed() }
        try await Task.sleep(for: .milliseconds(20))
        waiter.cancel()
        #expect(await waiter.value == .finished)
    }

    /// Every way a stream ends — unsubscribed, closed as slow, ended between turns of a large
    /// fan-out, refused, drained — leaves nothing behind in the hub or its fan-outs.
    @Test func theBookkeepingReturnsToZeroHoweverStreamsEnd() async throws {
        let zero = Hub.Bookkeeping(subscriptions: 0, rooms: 0, routes: 0, fanoutSubscribers: 0, fanoutQueued: 0)
        let hub = makeHub(buffer: 2, maxConnections: 2000)
        var subscriptions: [(Subscription, RecordingOutput)] = []
        for index in 0..<(LoopFanout.writesPerTurn * 3) {
            let out = output(index % 2)
            let roomName = RoomName("room-\(index % 7)")!
            let s = try hub.subscribe(room: roomName, output: out)
            // Some never go live: they queue events until they are dropped as slow.
            if index % 5 != 0 { s.goLive(after: nil) }
            // Some stop taking events: dropped as slow once their buffer is over.
            if index % 11 == 0 { out.isWritable = false }
            subscriptions.append((s, out))
        }
        // Every goLive has run before the first event, so those that went live stay (a busy
        // loop would otherwise queue all four rounds ahead of them and drop them all).
        try await subscriptions[0].1.settle()
        try await subscriptions[1].1.settle()
        for round in 1...4 {
            for roomIndex in 0..<7 { hub.deliver(stored(UInt64(round), room: RoomName("room-\(roomIndex)")!)) }
        }
        // Half end while the fan-out may be between turns of a batch.
        for (index, (s, _)) in subscriptions.enumerated() where index % 2 == 1 { hub.unsubscribe(s) }
        try await subscriptions[0].1.settle()
        try await subscriptions[1].1.settle()
        let midway = await hub.bookkeeping()
        #expect(midway.subscriptions > 0 && midway.rooms == 7)
        // The rest end with a drain; every stream is unsubscribed when its handler sees the end.
        let drained = Task { await hub.drain(spread: .zero, retry: 500...500, deadline: .seconds(5)) }
        for (s, _) in subscriptions {
            _ = await s.closed()
            hub.unsubscribe(s)
        }
        await drained.value
        var counts = await hub.bookkeeping()
        for _ in 0..<100 where counts != zero {
            try await Task.sleep(for: .milliseconds(20))
            counts = await hub.bookkeeping()
        }
        #expect(counts == zero)
        #expect(hub.connectionCount == 0)
    }
}

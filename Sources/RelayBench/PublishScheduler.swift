import Histogram
import NIOCore

/// Publishes messages 0..<count at a fixed rate over a few keep-alive connections.
///
/// Message `n` is due at `start + n / rate`. A due message goes out on the first idle connection;
/// when all are busy it waits, and its latency is still counted from when it was due, so a
/// server that slows the publisher down cannot hide behind it (coordinated omission).
///
/// Invariant that makes `@unchecked Sendable` true: everything here, and every `PublisherHandler`
/// it drives, runs on `loop` only; other threads reach it through `loop.submit`.
final class PublishScheduler: @unchecked Sendable {
    let loop: any EventLoop
    let count: Int
    /// Nanoseconds between two messages.
    let interval: Double
    private(set) var start: UInt64 = 0
    private var idle: [PublisherHandler] = []
    private var connections = 0
    private var nextDue = 0
    private var waiting: [Int] = []
    private var waitingHead = 0
    private var timer: Scheduled<Void>?
    private let finished: EventLoopPromise<Void>

    /// A bit per message the server accepted (2xx).
    private(set) var accepted: [UInt64]
    private(set) var acceptedCount = 0
    private(set) var answered = 0
    private(set) var failures: [String: Int] = [:]
    private(set) var firstSent: UInt64 = 0
    private(set) var lastSent: UInt64 = 0
    /// Time from writing a POST to its answer.
    private(set) var responseTime = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
    /// How far behind its schedule the publisher wrote the latest message.
    private(set) var lag: UInt64 = 0

    init(loop: any EventLoop, count: Int, rate: Double) {
        self.loop = loop
        self.count = count
        self.interval = 1_000_000_000 / rate
        self.accepted = Array(repeating: 0, count: (count + 63) / 64)
        self.finished = loop.makePromise()
    }

    /// Resolves once every message has been answered (or given up with its connection).
    var done: EventLoopFuture<Void> { finished.futureResult }

    func add(_ publisher: PublisherHandler) {
        loop.preconditionInEventLoop()
        connections += 1
        idle.append(publisher)
    }

    /// When message `sequence` is due.
    func due(_ sequence: Int) -> UInt64 {
        start &+ UInt64(Double(sequence) * interval)
    }

    /// Starts the clock: message 0 is due at `start`.
    func begin(at start: UInt64) {
        loop.preconditionInEventLoop()
        self.start = start
        if count == 0 { finished.succeed(()) }
        tick()
    }

    private func tick() {
        loop.assertInEventLoop()
        let now = NIODeadline.now().uptimeNanoseconds
        while nextDue < count, due(nextDue) <= now {
            waiting.append(nextDue)
            nextDue += 1
        }
        dispatch()
        if nextDue < count {
            timer = loop.scheduleTask(deadline: .uptimeNanoseconds(due(nextDue))) { [self] in tick() }
        }
    }

    private func dispatch() {
        loop.assertInEventLoop()
        while waitingHead < waiting.count, let publisher = idle.popLast() {
            let sequence = waiting[waitingHead]
            waitingHead += 1
            if waitingHead > 1024, waitingHead * 2 > waiting.count {
                waiting.removeFirst(waitingHead)
                waitingHead = 0
            }
            let now = NIODeadline.now().uptimeNanoseconds
            if firstSent == 0 { firstSent = now }
            lastSent = now
            lag = now > due(sequence) ? now - due(sequence) : 0
            publisher.send(sequence)
        }
    }

    func answered(_ sequence: Int, sent: UInt64, status: Int, by publisher: PublisherHandler) {
        loop.assertInEventLoop()
        let now = NIODeadline.now().uptimeNanoseconds
        _ = responseTime.record(now > sent ? now - sent : 0)
        if (200..<300).contains(status) {
            accepted[sequence >> 6] |= 1 << UInt64(sequence & 63)
            acceptedCount += 1
        } else {
            failures["HTTP \(status)", default: 0] += 1
        }
        complete()
        idle.append(publisher)
        dispatch()
    }

    func connectionLost(_ publisher: PublisherHandler, inFlight: Int?) {
        loop.assertInEventLoop()
        connections -= 1
        idle.removeAll { $0 === publisher }
        if inFlight != nil {
            failures["connection lost", default: 0] += 1
            complete()
        }
        if connections == 0 {
            // Nothing can be sent any more: count every unsent message as failed.
            let unsent = count - answered
            if unsent > 0 {
                failures["no publishing connection left", default: 0] += unsent
                answered = count
                timer?.cancel()
                finished.succeed(())
            }
        }
    }

    private func complete() {
        loop.assertInEventLoop()
        answered += 1
        if answered == count { finished.succeed(()) }
    }

    /// Messages sent so far (written, answered or not).
    var sent: Int { nextDue - (waiting.count - waitingHead) }
}

import Foundation
import Synchronization

/// An async Redis client over one hiredis connection, owned by a dedicated thread.
///
/// Callers on any task (never blocking an event loop) queue requests; the thread takes every
/// request queued since its last round trip and sends them as one pipeline, so concurrent callers
/// share round trips. While the connection is down it reconnects with capped exponential backoff
/// and jitter, and fails requests at once in between (callers answer 503 instead of waiting).
/// When idle it pings once a second, so `isConnected` stays true to the server's state.
public final class RedisClient: Sendable {
    public struct Configuration: Sendable {
        public var url: RedisURL
        public var connectTimeout: Duration = .seconds(1)
        public var commandTimeout: Duration = .seconds(2)
        /// Idle time after which the thread pings the server.
        public var pingInterval: Duration = .seconds(1)
        public var backoff = Backoff()

        public init(url: RedisURL) {
            self.url = url
        }
    }

    private struct Request {
        var commands: [RedisCommand]
        var continuation: CheckedContinuation<[RedisReply], any Error>
    }

    private struct Queue {
        var requests: [Request] = []
        var stopped = false
    }

    public let configuration: Configuration
    private let queue = Mutex(Queue())
    /// Signalled when a request is queued or the client stops; the worker waits on it.
    private let wakeup = NSCondition()
    private let connected = Atomic<Bool>(false)
    private let thread = Mutex<DedicatedThread?>(nil)
    private let onStateChange: @Sendable (_ connected: Bool, _ error: RedisError?) -> Void
    private let onRoundTrip: @Sendable (_ requests: Int, _ commands: Int) -> Void

    /// - Parameters:
    ///   - onStateChange: called on the client's thread when the connection comes up or goes down.
    ///   - onRoundTrip: called on the client's thread after each round trip with how many callers'
    ///     requests (and commands) it carried: the measure of the pipelining.
    public init(
        configuration: Configuration,
        onStateChange: @escaping @Sendable (_ connected: Bool, _ error: RedisError?) -> Void = { _, _ in },
        onRoundTrip: @escaping @Sendable (_ requests: Int, _ commands: Int) -> Void = { _, _ in }
    ) {
        self.configuration = configuration
        self.onStateChange = onStateChange
        self.onRoundTrip = onRoundTrip
    }

    /// True while the connection is up (as of the last round trip or ping).
    public var isConnected: Bool { connected.load(ordering: .relaxed) }

    /// Starts the client's thread; it connects at once.
    public func start() {
        let thread = DedicatedThread(name: "redis-client") { [self] in work() }
        self.thread.withLock { $0 = thread }
    }

    /// Stops the thread (failing what is queued) and waits for it to end.
    public func stop() {
        let alreadyStopped = queue.withLock { queue in
            defer { queue.stopped = true }
            return queue.stopped
        }
        guard !alreadyStopped else { return }
        wakeup.lock()
        wakeup.signal()
        wakeup.unlock()
        thread.withLock { $0 }?.join()
    }

    /// Sends the commands as one pipeline and returns their replies in order (error replies
    /// included as `.error`). Throws only when the connection is down or breaks.
    public func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        guard !commands.isEmpty else { return [] }
        return try await withCheckedThrowingContinuation { continuation in
            let accepted = queue.withLock { queue in
                guard !queue.stopped else { return false }
                queue.requests.append(Request(commands: commands, continuation: continuation))
                return true
            }
            guard accepted else {
                continuation.resume(throwing: RedisError.notConnected("the client is stopped"))
                return
            }
            wakeup.lock()
            wakeup.signal()
            wakeup.unlock()
        }
    }

    /// One command.
    public func command(_ command: RedisCommand) async throws -> RedisReply {
        try await pipeline([command])[0]
    }

    // MARK: The client's thread

    private func work() {
        var connection: RedisConnection? = nil
        var backoff = configuration.backoff
        var nextAttempt = ContinuousClock.now
        var lastError: RedisError? = nil
        var lastActivity = ContinuousClock.now

        func setConnected(_ value: Bool, _ error: RedisError?) {
            if connected.exchange(value, ordering: .relaxed) != value { onStateChange(value, error) }
        }

        func connectIfDue() {
            guard connection == nil, ContinuousClock.now >= nextAttempt else { return }
            do {
                connection = try RedisConnection(url: configuration.url, connectTimeout: configuration.connectTimeout, commandTimeout: configuration.commandTimeout)
                backoff.reset()
                lastError = nil
                lastActivity = ContinuousClock.now
                setConnected(true, nil)
            } catch {
                lastError = error
                nextAttempt = ContinuousClock.now + backoff.next()
                setConnected(false, error)
            }
        }

        while true {
            connectIfDue()
            let batch = takeBatch(waitingAtMost: connection == nil ? min(.milliseconds(250), max(.milliseconds(1), nextAttempt - ContinuousClock.now)) : configuration.pingInterval)
            guard let batch else { break }  // stopped
            if batch.isEmpty {
                // Idle: ping, so a dead server is noticed without traffic.
                if let live = connection, ContinuousClock.now - lastActivity >= configuration.pingInterval {
                    do {
                        _ = try live.command(["PING"])
                        lastActivity = ContinuousClock.now
                    } catch {
                        connection = nil
                        lastError = error
                        nextAttempt = ContinuousClock.now + backoff.next()
                        setConnected(false, error)
                    }
                }
                continue
            }
            connectIfDue()
            guard let live = connection else {
                let error = RedisError.notConnected(lastError?.description ?? "connecting")
                for request in batch { request.continuation.resume(throwing: error) }
                continue
            }
            do {
                let replies = try live.pipeline(batch.flatMap(\.commands))
                lastActivity = ContinuousClock.now
                onRoundTrip(batch.count, replies.count)
                var offset = 0
                for request in batch {
                    let count = request.commands.count
                    request.continuation.resume(returning: Array(replies[offset..<offset + count]))
                    offset += count
                }
            } catch {
                connection = nil
                lastError = error
                // Reconnect at once for the next request; back off only if that fails too.
                nextAttempt = ContinuousClock.now
                setConnected(false, error)
                for request in batch { request.continuation.resume(throwing: error) }
            }
        }
        connection = nil
        setConnected(false, nil)
        let leftover = queue.withLock { queue in
            defer { queue.requests.removeAll() }
            return queue.requests
        }
        for request in leftover { request.continuation.resume(throwing: RedisError.notConnected("the client is stopped")) }
    }

    /// Every queued request, after waiting up to `timeout` for one; empty on time-out, nil once stopped.
    private func takeBatch(waitingAtMost timeout: Duration) -> [Request]? {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        wakeup.lock()
        defer { wakeup.unlock() }
        while true {
            let (requests, stopped) = queue.withLock { queue in
                defer { queue.requests.removeAll(keepingCapacity: true) }
                return (queue.requests, queue.stopped)
            }
            if stopped {
                // Put them back for the final failure pass.
                queue.withLock { $0.requests.insert(contentsOf: requests, at: 0) }
                return nil
            }
            if !requests.isEmpty { return requests }
            if !wakeup.wait(until: deadline) { return [] }
        }
    }
}

/// Capped exponential backoff with jitter: 100 ms, 200 ms, … up to `maximum` (2 s: a restarted Redis
/// is found again within about two seconds), each delay drawn
/// uniformly from its upper half, so nodes that lost Redis together do not reconnect together.
public struct Backoff: Sendable {
    public var initial: Duration = .milliseconds(100)
    public var maximum: Duration = .seconds(2)
    private var current: Duration? = nil

    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(2)) {
        self.initial = initial
        self.maximum = maximum
    }

    public mutating func next() -> Duration {
        let ceiling = current.map { min(maximum, $0 * 2) } ?? initial
        current = ceiling
        return ceiling * Double.random(in: 0.5...1.0)
    }

    public mutating func reset() {
        current = nil
    }
}

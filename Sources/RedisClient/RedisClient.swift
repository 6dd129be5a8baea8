import NIOCore
import NIOPosix
import Synchronization

/// An async Redis client over one connection that lives on one NIO event loop.
///
/// Commands are written to the connection from its event loop as they come, and flushed once per
/// turn of the loop, so concurrent callers share round trips; replies are parsed by hiredis'
/// reader there too. A caller already on that loop (a request handler whose connection is served
/// by it) reaches Redis with no thread hop at all, and its task resumes on the loop.
///
/// While the connection is down it reconnects with capped exponential backoff and jitter, and
/// fails requests at once in between (callers answer 503 instead of waiting). A request waits for
/// a connection only while one is being made, and for its reply only `commandTimeout`: a server
/// that stops answering is dropped. When idle it pings every `pingInterval`, so `isConnected`
/// stays true to the server's state.
///
/// Invariant that makes `@unchecked Sendable` true: every `var` is read and written only on
/// `eventLoop` (public methods hop there; the rest assert it); `connected` is atomic; the rest is immutable.
public final class RedisClient: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var url: RedisURL
        public var connectTimeout: Duration = .seconds(1)
        /// How long a request may wait for its reply before the connection is dropped.
        public var commandTimeout: Duration = .seconds(2)
        /// Idle time after which the client pings the server.
        public var pingInterval: Duration = .seconds(1)
        public var backoff = Backoff()

        public init(url: RedisURL) {
            self.url = url
        }
    }

    public let configuration: Configuration
    /// The loop the connection lives on.
    public let eventLoop: any EventLoop
    private let connected = Atomic<Bool>(false)
    private let onStateChange: @Sendable (_ connected: Bool, _ error: RedisError?) -> Void
    private let onRoundTrip: @Sendable (_ requests: Int, _ commands: Int) -> Void

    // loop-confined
    /// The connection, made again after a failure (at once after a loss: callers are waiting).
    private let reconnection: RedisReconnection
    private var started = false
    private var lastError: RedisError?
    private var waiting: [(commands: [RedisCommand], promise: EventLoopPromise<[RedisReply]>)] = []
    private var lastSent = NIODeadline.now()

    /// - Parameters:
    ///   - eventLoop: where the connection lives; callers on it skip every thread hop.
    ///   - onStateChange: called on the event loop when the connection comes up or goes down.
    ///   - onRoundTrip: called on the event loop after each flush with how many callers'
    ///     requests (and commands) it carried: the measure of the pipelining.
    public init(
        configuration: Configuration,
        eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next(),
        onStateChange: @escaping @Sendable (_ connected: Bool, _ error: RedisError?) -> Void = { _, _ in },
        onRoundTrip: @escaping @Sendable (_ requests: Int, _ commands: Int) -> Void = { _, _ in }
    ) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.onStateChange = onStateChange
        self.onRoundTrip = onRoundTrip
        self.reconnection = RedisReconnection(
            url: configuration.url, eventLoop: eventLoop, connectTimeout: configuration.connectTimeout,
            backoff: configuration.backoff, retryLostAtOnce: true)
        // The reconnection lives as long as this client, and calls it on the loop only.
        reconnection.events = .init(
            up: { [unowned self] in connected($0) },
            failed: { [unowned self] in failed($0) },
            lost: { [unowned self] in lost($1) },
            tick: { [unowned self] in check($0) })
    }

    /// True while the connection is up (as of the last reply, ping or failure).
    public var isConnected: Bool { connected.load(ordering: .relaxed) }

    /// Connects, and keeps connecting until `stop()`.
    public func start() {
        eventLoop.execute { [self] in
            guard !started else { return }
            started = true
            reconnection.start(tick: .init(min(configuration.pingInterval, .milliseconds(250))))
        }
    }

    /// Closes the connection and fails what is waiting; requests from now on fail at once.
    public func stop() {
        eventLoop.execute { [self] in
            let connection = reconnection.stop()
            failWaiting(.notConnected("the client is stopped"))
            connection?.handler.value.close(.notConnected("the client is stopped"))
            setConnected(false, nil)
        }
    }

    /// Sends the commands as one pipeline and returns their replies in order (error replies
    /// included as `.error`). Throws only when the connection is down, breaks, or times out.
    public func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        guard !commands.isEmpty else { return [] }
        let promise = eventLoop.makePromise(of: [RedisReply].self)
        if eventLoop.inEventLoop {
            submit(commands, promise)
        } else {
            eventLoop.execute { [self] in submit(commands, promise) }
        }
        return try await promise.futureResult.get()
    }

    /// One command.
    public func command(_ command: RedisCommand) async throws -> RedisReply {
        try await pipeline([command])[0]
    }

    // MARK: On the event loop

    private func submit(_ commands: [RedisCommand], _ promise: EventLoopPromise<[RedisReply]>) {
        eventLoop.assertInEventLoop()
        switch reconnection.phase {
        case .up(let connection):
            connection.handler.value.send(commands, promise: promise)
            lastSent = .now()
        case .connecting:
            waiting.append((commands, promise))
        case .down where reconnection.attemptDue:
            waiting.append((commands, promise))
            reconnection.connectNow()
        case .down:
            promise.fail(RedisError.notConnected(lastError?.description ?? "connecting"))
        case .idle:
            promise.fail(RedisError.notConnected("the client is not started"))
        case .stopped:
            promise.fail(RedisError.notConnected("the client is stopped"))
        }
    }

    private func connected(_ connection: RedisConnection) {
        eventLoop.assertInEventLoop()
        let handler = connection.handler.value
        handler.onRoundTrip = onRoundTrip
        reconnection.resetBackoff()
        lastError = nil
        lastSent = .now()
        setConnected(true, nil)
        for request in waiting {
            handler.send(request.commands, promise: request.promise)
        }
        waiting.removeAll()
    }

    /// A connection attempt failed: requests waiting for it fail too.
    private func failed(_ error: RedisError) {
        eventLoop.assertInEventLoop()
        lastError = error
        failWaiting(.notConnected(error.description))
        setConnected(false, error)
    }

    /// The connection closed (the server went away, a reply timed out, a protocol error); the
    /// next request (or tick) reconnects at once, and backs off only if that fails.
    private func lost(_ error: RedisError) {
        eventLoop.assertInEventLoop()
        lastError = error
        setConnected(false, error)
    }

    /// Every tick: drops a connection whose oldest request has waited too long, and pings an idle one.
    private func check(_ now: NIODeadline) {
        eventLoop.assertInEventLoop()
        guard let connection = reconnection.connection else { return }
        let handler = connection.handler.value
        if let oldest = handler.oldestPendingSince, now - oldest > .init(configuration.commandTimeout) {
            handler.close(.connectionLost("no reply from Redis within \(configuration.commandTimeout)"))
        } else if handler.pendingCount == 0, now - lastSent >= .init(configuration.pingInterval) {
            handler.send([["PING"]], promise: eventLoop.makePromise())
            lastSent = now
        }
    }

    private func failWaiting(_ error: RedisError) {
        eventLoop.assertInEventLoop()
        let requests = waiting
        waiting.removeAll()
        for request in requests { request.promise.fail(error) }
    }

    private func setConnected(_ value: Bool, _ error: RedisError?) {
        eventLoop.assertInEventLoop()
        if connected.exchange(value, ordering: .relaxed) != value { onStateChange(value, error) }
    }
}

import NIOCore

/// The connection half that `RedisClient` and `RedisSubscriber` share: one connection at a time
/// to one server on one event loop, made again after it fails or is lost, with capped exponential
/// backoff between attempts, and a tick for the owner's checks (replies overdue, pings) that also
/// makes an attempt when one is due.
///
/// The owner tells it what to do (`start`, `connectNow`, `stop`) and hears what became of the
/// connection through `events`; the owner keeps what is its own (waiting requests, a
/// subscription's progress).
///
/// Not `Sendable`: its owner uses it on `eventLoop` only, which every method asserts.
final class RedisReconnection {
    enum Phase {
        case idle
        case connecting
        case up(RedisConnection)
        /// No connection; the next attempt is due at `nextAttempt`.
        case down(nextAttempt: NIODeadline)
        case stopped
    }

    /// What the owner hears, on `eventLoop`.
    struct Events {
        /// A connection is up.
        var up: (RedisConnection) -> Void
        /// An attempt failed; the next is due after the backoff.
        var failed: (RedisError) -> Void
        /// The connection that was up closed (the server went away, a reply was overdue, a
        /// protocol error): `error` says so.
        var lost: (RedisConnection, RedisError) -> Void
        /// Every tick, before an attempt that is due is made.
        var tick: (NIODeadline) -> Void
    }

    let url: RedisURL
    let eventLoop: any EventLoop
    private let connectTimeout: Duration
    /// After a lost connection: try again at once (a client whose callers are waiting), or only
    /// after the backoff (a subscriber, which would hammer a server that drops it).
    private let retryLostAtOnce: Bool
    private var backoff: Backoff
    private var timer: Scheduled<Void>?
    private var tick = TimeAmount.milliseconds(250)
    private(set) var phase = Phase.idle
    /// Set by the owner right after init (its callbacks refer to it).
    var events = Events(up: { _ in }, failed: { _ in }, lost: { _, _ in }, tick: { _ in })

    init(url: RedisURL, eventLoop: any EventLoop, connectTimeout: Duration, backoff: Backoff, retryLostAtOnce: Bool) {
        self.url = url
        self.eventLoop = eventLoop
        self.connectTimeout = connectTimeout
        self.backoff = backoff
        self.retryLostAtOnce = retryLostAtOnce
    }

    /// The connection while it is up.
    var connection: RedisConnection? {
        if case .up(let connection) = phase { return connection }
        return nil
    }

    /// Connects, ticks every `tick`, and keeps connecting until `stop()`.
    func start(tick: TimeAmount) {
        eventLoop.assertInEventLoop()
        guard case .idle = phase else { return }
        self.tick = tick
        scheduleTick()
        connectNow()
    }

    /// The next tick, at the next multiple of `tick` on the uptime clock. Every reconnection with
    /// the same tick (a node's clients and subscribers, on each loop) fires at the same instants,
    /// so a resting loop wakes once per tick for all of them rather than once for each: on an
    /// idle node the wake-ups, not the checks, were the cost.
    private func scheduleTick() {
        let period = UInt64(max(tick.nanoseconds, 1))
        let next = (NIODeadline.now().uptimeNanoseconds / period + 1) * period
        timer = eventLoop.scheduleTask(deadline: .uptimeNanoseconds(next)) { [self] in
            if case .stopped = phase { return }
            let now = NIODeadline.now()
            events.tick(now)
            if case .down(let nextAttempt) = phase, now >= nextAttempt { connectNow() }
            scheduleTick()
        }
    }

    /// Stops for good and returns the connection that was up, for the owner to close as it likes.
    func stop() -> RedisConnection? {
        eventLoop.assertInEventLoop()
        let connection = self.connection
        phase = .stopped
        timer?.cancel()
        timer = nil
        return connection
    }

    /// Whether an attempt is due now (the connection is down and its backoff has passed).
    var attemptDue: Bool {
        if case .down(let nextAttempt) = phase { return NIODeadline.now() >= nextAttempt }
        return false
    }

    /// Makes an attempt now.
    func connectNow() {
        eventLoop.assertInEventLoop()
        phase = .connecting
        RedisConnection.connect(to: url, on: eventLoop, timeout: connectTimeout) { [self] result in
            guard case .connecting = phase else {
                // Stopped meanwhile.
                if case .success(let connection) = result { connection.channel.close(promise: nil) }
                return
            }
            switch result {
            case .success(let connection):
                phase = .up(connection)
                connection.channel.closeFuture.assumeIsolated().whenComplete { [self] _ in
                    lost(connection)
                }
                events.up(connection)
            case .failure(let error):
                phase = .down(nextAttempt: .now() + .init(backoff.next()))
                events.failed(error)
            }
        }
    }

    /// The owner got what it needed from a connection (the first reply, a confirmed subscription):
    /// the next failure starts the backoff from its shortest delay again.
    func resetBackoff() {
        backoff.reset()
    }

    private func lost(_ connection: RedisConnection) {
        eventLoop.assertInEventLoop()
        guard case .up(let current) = phase, current.channel === connection.channel else { return }
        // The handler knows why (a reply overdue, a ping unanswered, the server's close).
        let reason: String
        switch connection.handler.value.failure {
        case .connectionLost(let text)?: reason = text
        case let failure?: reason = failure.description
        case nil: reason = "the connection closed"
        }
        let error = RedisError.connectionLost("\(url.host):\(url.port): \(reason)")
        phase = .down(nextAttempt: retryLostAtOnce ? .now() : .now() + .init(backoff.next()))
        events.lost(connection, error)
    }
}

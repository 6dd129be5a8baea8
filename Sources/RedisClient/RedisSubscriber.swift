import NIOCore
import NIOPosix
import Synchronization

/// A pub/sub connection on one NIO event loop: subscribes to channels and hands every message to
/// a callback there, in the order Redis sent them, with no thread hop on the way.
///
/// It pings every `pingInterval` and declares the connection dead when nothing has come back for
/// `deadAfter` after a ping, so a lost or frozen server is noticed within about two seconds even
/// when no message flows. Then it reconnects with capped exponential backoff and jitter, and
/// subscribes again. Each time it is subscribed, `onSubscribed` runs (asynchronously: it may read
/// what was missed meanwhile) before any newer message is handed over; messages that arrive while
/// it runs are held, in order, up to `maximumHeld` (beyond that it subscribes again, and
/// `onSubscribed` runs again).
///
/// Invariant that makes `@unchecked Sendable` true: every `var` is read and written only on
/// `eventLoop` (public methods hop there; the rest assert it); `up` is atomic; the rest is immutable.
public final class RedisSubscriber: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var url: RedisURL
        public var channels: [String]
        public var connectTimeout: Duration = .seconds(1)
        public var pingInterval: Duration = .milliseconds(500)
        public var deadAfter: Duration = .milliseconds(1500)
        public var backoff = Backoff()
        /// Messages held while `onSubscribed` runs before the subscriber gives up and subscribes again.
        public var maximumHeld = 100_000

        public init(url: RedisURL, channels: [String]) {
            self.url = url
            self.channels = channels
        }
    }

    /// What `onSubscribed` wants.
    public enum Disposition: Sendable {
        case proceed
        /// Drop the connection and subscribe again (after backoff): for a handler that could not
        /// do what `onSubscribed` requires of it (such as filling the gap of an outage).
        case resubscribe
    }

    private enum State {
        case idle
        case connecting
        /// Connected; SUBSCRIBE sent, `confirmed` channels confirmed so far.
        case subscribing(RedisConnection, confirmed: Int)
        /// Subscribed; `onSubscribed` is running and messages are held.
        case catchingUp(RedisConnection, held: [(channel: [UInt8], payload: [UInt8])])
        case live(RedisConnection)
        case down(nextAttempt: NIODeadline)
        case stopped
    }

    public let configuration: Configuration
    public let eventLoop: any EventLoop
    private let onSubscribed: @Sendable (_ reconnected: Bool) async -> Disposition
    private let onMessage: @Sendable (_ channel: [UInt8], _ payload: [UInt8]) -> Void
    private let onDown: @Sendable (RedisError) -> Void
    private let up = Atomic<Bool>(false)

    // loop-confined
    private var state = State.idle
    private var backoff: Backoff
    private var everSubscribed = false
    private var lastPing = NIODeadline.now()
    /// When the first ping not yet answered (by anything) was sent.
    private var pingOutstandingSince: NIODeadline?
    private var timer: RepeatedTask?

    /// - Parameters:
    ///   - onSubscribed: runs each time every channel is confirmed (`reconnected` after a loss);
    ///     messages published from then on will arrive, after it returns.
    ///   - onMessage: each message, on `eventLoop`.
    ///   - onDown: the connection is down (and will be retried), on `eventLoop`.
    public init(
        configuration: Configuration,
        eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next(),
        onSubscribed: @escaping @Sendable (_ reconnected: Bool) async -> Disposition,
        onMessage: @escaping @Sendable (_ channel: [UInt8], _ payload: [UInt8]) -> Void,
        onDown: @escaping @Sendable (RedisError) -> Void
    ) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.backoff = configuration.backoff
        self.onSubscribed = onSubscribed
        self.onMessage = onMessage
        self.onDown = onDown
    }

    /// True while subscribed.
    public var isSubscribed: Bool { up.load(ordering: .relaxed) }

    public func start() {
        eventLoop.execute { [self] in
            guard case .idle = state else { return }
            timer = eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { [self] _ in
                check()
            }
            connect()
        }
    }

    /// Closes the connection; nothing is handed over after this.
    public func stop() {
        eventLoop.execute { [self] in
            let connection = self.connection
            state = .stopped
            timer?.cancel()
            timer = nil
            up.store(false, ordering: .relaxed)
            connection?.handler.value.close(.notConnected("the subscriber is stopped"))
        }
    }

    // MARK: On the event loop

    private var connection: RedisConnection? {
        switch state {
        case .subscribing(let connection, _), .catchingUp(let connection, _), .live(let connection): connection
        case .idle, .connecting, .down, .stopped: nil
        }
    }

    private func connect() {
        eventLoop.assertInEventLoop()
        state = .connecting
        RedisConnection.connect(to: configuration.url, on: eventLoop, timeout: configuration.connectTimeout) { [self] result in
            switch result {
            case .success(let connection):
                connected(connection)
            case .failure(let error):
                guard case .connecting = state else { return }  // stopped meanwhile
                failed(error)
            }
        }
    }

    private func connected(_ connection: RedisConnection) {
        eventLoop.assertInEventLoop()
        guard case .connecting = state else {
            connection.channel.close(promise: nil)
            return
        }
        let handler = connection.handler.value
        handler.onPush = { [self] reply in received(reply, on: connection) }
        state = .subscribing(connection, confirmed: 0)
        lastPing = .now()
        pingOutstandingSince = nil
        handler.sendWithoutReply([["SUBSCRIBE"] + configuration.channels.map { RedisArgument($0) }])
        connection.channel.closeFuture.assumeIsolated().whenComplete { [self] _ in
            guard self.connection?.channel === connection.channel else { return }
            failed(.connectionLost("\(configuration.url.host):\(configuration.url.port) closed the subscription"))
        }
    }

    /// A connection attempt failed or the connection was lost: report it, back off, retry.
    private func failed(_ error: RedisError) {
        eventLoop.assertInEventLoop()
        if up.exchange(false, ordering: .relaxed) || !everSubscribed {
            onDown(error)
        }
        state = .down(nextAttempt: .now() + .init(backoff.next()))
    }

    private func received(_ reply: RedisReply, on connection: RedisConnection) {
        eventLoop.assertInEventLoop()
        // Anything from the server proves it alive.
        pingOutstandingSince = nil
        guard let parts = reply.array, let kind = parts.first?.string else { return }
        switch (kind, state) {
        case ("message", .live) where parts.count == 3:
            onMessage(parts[1].bytes ?? [], parts[2].bytes ?? [])
        case ("message", .catchingUp(let current, var held)) where parts.count == 3:
            state = .live(current)  // releases the state's reference, so appending does not copy
            held.append((parts[1].bytes ?? [], parts[2].bytes ?? []))
            if held.count > configuration.maximumHeld {
                current.handler.value.close(.connectionLost("more than \(configuration.maximumHeld) messages arrived while catching up"))
                return
            }
            state = .catchingUp(current, held: held)
        case ("subscribe", .subscribing(let current, let confirmed)):
            guard confirmed + 1 == configuration.channels.count else {
                state = .subscribing(current, confirmed: confirmed + 1)
                return
            }
            state = .catchingUp(current, held: [])
            up.store(true, ordering: .relaxed)
            let reconnected = everSubscribed
            everSubscribed = true
            let onSubscribed = self.onSubscribed
            Task {
                let disposition = await onSubscribed(reconnected)
                eventLoop.execute { [self] in caughtUp(disposition, on: current) }
            }
        default:
            break  // "pong" and the like
        }
    }

    /// `onSubscribed` returned: hand over what was held, in order, then go live, unless it asked
    /// to start over.
    private func caughtUp(_ disposition: Disposition, on connection: RedisConnection) {
        eventLoop.assertInEventLoop()
        guard case .catchingUp(let current, let held) = state, current.channel === connection.channel else { return }
        guard disposition == .proceed else {
            current.handler.value.close(.connectionLost("the handler asked to subscribe again"))
            return
        }
        state = .live(current)
        backoff.reset()
        for message in held {
            onMessage(message.channel, message.payload)
        }
    }

    /// Every tick: pings, declares a silent server dead, reconnects when due.
    private func check() {
        eventLoop.assertInEventLoop()
        let now = NIODeadline.now()
        if let connection {
            if let since = pingOutstandingSince, now - since > .init(configuration.deadAfter) {
                connection.handler.value.close(.connectionLost("no answer to PING for \(configuration.deadAfter)"))
                return
            }
            if now - lastPing >= .init(configuration.pingInterval) {
                connection.handler.value.sendWithoutReply([["PING"]])
                lastPing = now
                if pingOutstandingSince == nil { pingOutstandingSince = now }
            }
        } else if case .down(let nextAttempt) = state, now >= nextAttempt {
            connect()
        }
    }
}

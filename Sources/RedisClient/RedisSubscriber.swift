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

    /// How far a connection that is up has come.
    private enum Progress {
        /// SUBSCRIBE sent, `confirmed` channels confirmed so far.
        case subscribing(confirmed: Int)
        /// Subscribed; `onSubscribed` is running and messages are held.
        case catchingUp(held: [(channel: [UInt8], payload: [UInt8])])
        case live
    }

    public let configuration: Configuration
    public let eventLoop: any EventLoop
    private let onSubscribed: @Sendable (_ reconnected: Bool) async -> Disposition
    private let onMessage: @Sendable (_ channel: [UInt8], _ payload: [UInt8]) -> Void
    private let onDown: @Sendable (RedisError) -> Void
    private let up = Atomic<Bool>(false)

    // loop-confined
    /// The connection, made again after a failure or a loss, after the backoff.
    private let reconnection: RedisReconnection
    private var started = false
    /// Where the connection that is up stands; meaningless while it is not.
    private var progress = Progress.subscribing(confirmed: 0)
    private var everSubscribed = false
    private var lastPing = NIODeadline.now()
    /// When the first ping not yet answered (by anything) was sent.
    private var pingOutstandingSince: NIODeadline?

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
        self.onSubscribed = onSubscribed
        self.onMessage = onMessage
        self.onDown = onDown
        self.reconnection = RedisReconnection(
            url: configuration.url, eventLoop: eventLoop, connectTimeout: configuration.connectTimeout,
            backoff: configuration.backoff, retryLostAtOnce: false)
        // The reconnection lives as long as this subscriber, and calls it on the loop only.
        reconnection.events = .init(
            up: { [unowned self] in connected($0) },
            failed: { [unowned self] in failed($0) },
            lost: { [unowned self] in failed($1) },
            tick: { [unowned self] in check($0) })
    }

    /// True while subscribed.
    public var isSubscribed: Bool { up.load(ordering: .relaxed) }

    public func start() {
        eventLoop.execute { [self] in
            guard !started else { return }
            started = true
            reconnection.start(tick: .milliseconds(100))
        }
    }

    /// Closes the connection; nothing is handed over after this.
    public func stop() {
        eventLoop.execute { [self] in
            let connection = reconnection.stop()
            up.store(false, ordering: .relaxed)
            connection?.handler.value.close(.notConnected("the subscriber is stopped"))
        }
    }

    // MARK: On the event loop

    private func connected(_ connection: RedisConnection) {
        eventLoop.assertInEventLoop()
        let handler = connection.handler.value
        handler.onPush = { [self] reply in received(reply, on: connection) }
        progress = .subscribing(confirmed: 0)
        lastPing = .now()
        pingOutstandingSince = nil
        handler.sendWithoutReply([["SUBSCRIBE"] + configuration.channels.map { RedisArgument($0) }])
    }

    /// A connection attempt failed or the connection was lost: report it (the reconnection backs
    /// off and tries again).
    private func failed(_ error: RedisError) {
        eventLoop.assertInEventLoop()
        if up.exchange(false, ordering: .relaxed) || !everSubscribed {
            onDown(error)
        }
    }

    private func received(_ reply: RedisReply, on connection: RedisConnection) {
        eventLoop.assertInEventLoop()
        guard let current = reconnection.connection, current.channel === connection.channel else { return }
        // Anything from the server proves it alive.
        pingOutstandingSince = nil
        guard let parts = reply.array, let kind = parts.first?.string else { return }
        switch (kind, progress) {
        case ("message", .live) where parts.count == 3:
            onMessage(parts[1].bytes ?? [], parts[2].bytes ?? [])
        case ("message", .catchingUp(var held)) where parts.count == 3:
            progress = .live  // releases the progress's reference, so appending does not copy
            held.append((parts[1].bytes ?? [], parts[2].bytes ?? []))
            if held.count > configuration.maximumHeld {
                current.handler.value.close(.connectionLost("more than \(configuration.maximumHeld) messages arrived while catching up"))
                return
            }
            progress = .catchingUp(held: held)
        case ("subscribe", .subscribing(let confirmed)):
            guard confirmed + 1 == configuration.channels.count else {
                progress = .subscribing(confirmed: confirmed + 1)
                return
            }
            progress = .catchingUp(held: [])
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
        guard let current = reconnection.connection, current.channel === connection.channel,
            case .catchingUp(let held) = progress
        else { return }
        guard disposition == .proceed else {
            current.handler.value.close(.connectionLost("the handler asked to subscribe again"))
            return
        }
        progress = .live
        reconnection.resetBackoff()
        for message in held {
            onMessage(message.channel, message.payload)
        }
    }

    /// Every tick: pings, and declares a silent server dead.
    private func check(_ now: NIODeadline) {
        eventLoop.assertInEventLoop()
        guard let connection = reconnection.connection else { return }
        if let since = pingOutstandingSince, now - since > .init(configuration.deadAfter) {
            connection.handler.value.close(.connectionLost("no answer to PING for \(configuration.deadAfter)"))
            return
        }
        if now - lastPing >= .init(configuration.pingInterval) {
            connection.handler.value.sendWithoutReply([["PING"]])
            lastPing = now
            if pingOutstandingSince == nil { pingOutstandingSince = now }
        }
    }
}

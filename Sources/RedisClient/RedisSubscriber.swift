import NIOCore
import NIOPosix
import Synchronization

/// A pub/sub connection on one NIO event loop: subscribes to channels and hands every message to
/// a callback there, in the order Redis sent them, with no thread hop on the way.
///
/// Two kinds of channels: the fixed ones of its configuration, always subscribed, and the ones
/// asked for with `listen(_:)` while it runs (a room's channel while the room has subscribers on
/// this loop). An asked-for channel is unsubscribed once `stillWanted` has said no for `linger`
/// (checked every second), so a page that reloads does not make it churn; all are subscribed
/// again, in batches, after a reconnection.
///
/// It pings after `pingInterval` in which nothing came from the server, and declares the
/// connection dead when nothing has come back for `deadAfter` after a ping, so a lost or frozen
/// server is noticed within about two seconds whether messages flow or not. Then it reconnects
/// with capped exponential backoff and jitter, and subscribes again. Each time it is subscribed,
/// `onSubscribed` runs (asynchronously: it may read what was missed meanwhile) before any newer
/// message is handed over; messages that arrive while it runs are held, in order, up to
/// `maximumHeld` (beyond that it subscribes again, and `onSubscribed` runs again).
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
        /// How long a channel asked for with `listen(_:)` stays subscribed once unwanted.
        public var linger: Duration = .seconds(10)
        /// Channels per SUBSCRIBE or UNSUBSCRIBE command.
        public var batch = 1000
        /// Sharded pub/sub (Redis 7, `SSUBSCRIBE`): for a Redis Cluster node, which delivers what
        /// `SPUBLISH` sends to channels of the slots it serves. A command names channels of one
        /// slot only; a channel whose slot moves away is dropped by the server (`onMoved`).
        public var sharded = false

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
        /// SUBSCRIBE sent for every channel; `pending` are not confirmed yet.
        case subscribing(pending: Set<String>)
        /// Subscribed; `onSubscribed` is running and messages are held.
        case catchingUp(held: [(channel: [UInt8], payload: [UInt8])])
        case live
    }

    public let configuration: Configuration
    public let eventLoop: any EventLoop
    private let onSubscribed: @Sendable (_ reconnected: Bool) async -> Disposition
    private let onMessage: @Sendable (_ channel: [UInt8], _ payload: [UInt8]) -> Void
    private let onDown: @Sendable (RedisError) -> Void
    private let stillWanted: @Sendable (_ channel: String) -> Bool
    private let onListening: @Sendable (_ delta: Int) -> Void
    private let onMoved: @Sendable (_ channel: String) -> Void
    private let up = Atomic<Bool>(false)

    // loop-confined
    /// The connection, made again after a failure or a loss, after the backoff.
    private let reconnection: RedisReconnection
    private var started = false
    private var stopped = false
    /// Where the connection that is up stands; meaningless while it is not.
    private var progress = Progress.subscribing(pending: [])
    /// The channels asked for with `listen(_:)` and not yet given up.
    private var interests: [String: Interest] = [:]
    private var lastSweep = NIODeadline.now()
    private var everSubscribed = false
    /// When the server was last pinged or last known to have sent something (as of a tick).
    private var lastSign = NIODeadline.now()
    /// Something came from the server since the last tick: no ping is needed to know it is alive.
    private var heardSinceTick = false
    /// When the first ping not yet answered (by anything) was sent.
    private var pingOutstandingSince: NIODeadline?

    /// - Parameters:
    ///   - onSubscribed: runs each time every channel is confirmed (`reconnected` after a loss);
    ///     messages published from then on will arrive, after it returns.
    ///   - onMessage: each message, on `eventLoop`.
    ///   - onDown: the connection is down (and will be retried), on `eventLoop`.
    ///   - stillWanted: whether a channel asked for with `listen(_:)` is still needed, on `eventLoop`.
    ///   - onListening: the number of asked-for channels changed by `delta`, on `eventLoop`.
    ///   - onMoved: sharded: the server dropped an asked-for channel, whose slot it no longer
    ///     serves; the channel stays asked for here, unconfirmed, for the owner to move it.
    public init(
        configuration: Configuration,
        eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next(),
        onSubscribed: @escaping @Sendable (_ reconnected: Bool) async -> Disposition,
        onMessage: @escaping @Sendable (_ channel: [UInt8], _ payload: [UInt8]) -> Void,
        onDown: @escaping @Sendable (RedisError) -> Void,
        stillWanted: @escaping @Sendable (_ channel: String) -> Bool = { _ in true },
        onListening: @escaping @Sendable (_ delta: Int) -> Void = { _ in },
        onMoved: @escaping @Sendable (_ channel: String) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.onSubscribed = onSubscribed
        self.onMessage = onMessage
        self.onDown = onDown
        self.stillWanted = stillWanted
        self.onListening = onListening
        self.onMoved = onMoved
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

    /// Subscribes to `channel` if it is not yet; the future succeeds once Redis confirmed it (every
    /// message published to it from then on arrives). While the connection is down, or if it is
    /// lost before the confirmation, the channel is kept for the next connection and the future
    /// succeeds at once: what is published meanwhile is for `onSubscribed` to make up for, as it
    /// does for every channel. Fails only once the subscriber is stopped. From any thread.
    public func listen(_ channel: String) -> EventLoopFuture<Void> {
        if eventLoop.inEventLoop { return listenOnLoop(channel) }
        return eventLoop.flatSubmit { self.listenOnLoop(channel) }
    }

    /// Takes over channels another subscriber held (sharded: their slot moved to this node):
    /// they are asked for as by `listen(_:)`, and the connection, if up, is made again, so that
    /// they are subscribed with the rest and `onSubscribed` makes up for what was published to
    /// them meanwhile before any newer message is handed over. From any thread.
    public func adopt(_ channels: [String]) {
        eventLoop.execute { [self] in
            guard !stopped else { return }
            let new = channels.filter { interests[$0] == nil }
            guard !new.isEmpty else { return }
            for channel in new { interests[channel] = Interest() }
            onListening(new.count)
            reconnection.connection?.handler.value.close(.connectionLost("taking over \(new.count) channels"))
        }
    }

    /// Gives up `channels` (nil: all) at once, for another subscriber to adopt: whoever waits for
    /// one goes on (the other subscriber makes up for the gap). The future has the channels
    /// given up. From any thread.
    public func release(_ channels: [String]?) -> EventLoopFuture<[String]> {
        eventLoop.submit { [self] in
            let leaving = channels.map { $0.filter { interests[$0] != nil } } ?? Array(interests.keys)
            guard !leaving.isEmpty else { return [] }
            var waiting: [EventLoopPromise<Void>] = []
            for channel in leaving {
                waiting += interests[channel]?.waiters ?? []
                interests[channel] = nil
            }
            onListening(-leaving.count)
            if let connection = reconnection.connection { send(.unsubscribe, leaving, on: connection) }
            for waiter in waiting { waiter.succeed() }
            return leaving
        }
    }

    /// The channels asked for with `listen(_:)` and held now (confirmed or on their way), on any
    /// thread: for tests and diagnostics.
    public func listening() -> EventLoopFuture<Set<String>> {
        eventLoop.submit { Set(self.interests.keys) }
    }

    public func start() {
        eventLoop.execute { [self] in
            guard !started else { return }
            started = true
            // Half the ping interval: pings on time, a silent server noticed within a quarter
            // second of `deadAfter`, and the same instants as the clients' ticks.
            reconnection.start(tick: .init(min(configuration.pingInterval / 2, .milliseconds(250))))
        }
    }

    /// Closes the connection; nothing is handed over after this.
    public func stop() {
        eventLoop.execute { [self] in
            let connection = reconnection.stop()
            up.store(false, ordering: .relaxed)
            stopped = true
            releaseWaiters(failing: .notConnected("the subscriber is stopped"))
            connection?.handler.value.close(.notConnected("the subscriber is stopped"))
        }
    }

    // MARK: On the event loop

    private func connected(_ connection: RedisConnection) {
        eventLoop.assertInEventLoop()
        let handler = connection.handler.value
        handler.onPush = { [self] reply in received(reply, on: connection) }
        lastSign = .now()
        pingOutstandingSince = nil
        let channels = configuration.channels + interests.keys
        for key in interests.keys { interests[key]!.confirmed = false }
        progress = .subscribing(pending: Set(channels))
        guard !channels.isEmpty else {
            // Nothing to subscribe to yet: up as it is.
            subscribed(on: connection)
            return
        }
        send(.subscribe, channels, on: connection)
    }

    private enum Verb {
        case subscribe, unsubscribe
    }

    /// Sends (S)SUBSCRIBE or (S)UNSUBSCRIBE for `channels`, `configuration.batch` channels per
    /// command (sharded: the channels of one slot per command, as Redis requires).
    private func send(_ verb: Verb, _ channels: [String], on connection: RedisConnection) {
        let command: RedisArgument =
            switch (verb, configuration.sharded) {
            case (.subscribe, false): "SUBSCRIBE"
            case (.unsubscribe, false): "UNSUBSCRIBE"
            case (.subscribe, true): "SSUBSCRIBE"
            case (.unsubscribe, true): "SUNSUBSCRIBE"
            }
        let groups = configuration.sharded ? Array(Dictionary(grouping: channels, by: { RedisKeySlot.of($0) }).values) : [channels]
        var commands: [RedisCommand] = []
        for group in groups {
            var start = 0
            while start < group.count {
                let end = min(start + configuration.batch, group.count)
                commands.append([command] + group[start..<end].map { RedisArgument($0) })
                start = end
            }
        }
        connection.handler.value.sendWithoutReply(commands)
    }

    private func listenOnLoop(_ channel: String) -> EventLoopFuture<Void> {
        eventLoop.assertInEventLoop()
        if var interest = interests[channel] {
            interest.idleSince = nil
            if interest.confirmed {
                interests[channel] = interest
                return eventLoop.makeSucceededVoidFuture()
            }
            guard let connection = reconnection.connection else {
                interests[channel] = interest
                return eventLoop.makeSucceededVoidFuture()
            }
            let promise = eventLoop.makePromise(of: Void.self)
            interest.waiters.append(promise)
            interests[channel] = interest
            // Asked again: its SUBSCRIBE may be on its way (a second confirmation does no harm),
            // or, sharded, it was refused or dropped and nothing would answer the waiter.
            send(.subscribe, [channel], on: connection)
            return promise.futureResult
        }
        guard !stopped else { return eventLoop.makeFailedFuture(RedisError.notConnected("the subscriber is stopped")) }
        onListening(1)
        guard let connection = reconnection.connection else {
            interests[channel] = Interest()
            return eventLoop.makeSucceededVoidFuture()
        }
        let promise = eventLoop.makePromise(of: Void.self)
        interests[channel] = Interest(waiters: [promise])
        send(.subscribe, [channel], on: connection)
        return promise.futureResult
    }

    /// Every second: gives up the asked-for channels unwanted for `linger`, in batches.
    private func sweep(_ now: NIODeadline) {
        eventLoop.assertInEventLoop()
        guard now - lastSweep >= .seconds(1) else { return }
        lastSweep = now
        var leaving: [String] = []
        for (channel, interest) in interests where interest.waiters.isEmpty {
            if stillWanted(channel) {
                if interest.idleSince != nil { interests[channel]!.idleSince = nil }
            } else if let since = interest.idleSince {
                if now - since >= .init(configuration.linger) { leaving.append(channel) }
            } else {
                interests[channel]!.idleSince = now
            }
        }
        guard !leaving.isEmpty else { return }
        for channel in leaving { interests[channel] = nil }
        onListening(-leaving.count)
        if let connection = reconnection.connection {
            send(.unsubscribe, leaving, on: connection)
        }
    }

    /// A connection attempt failed or the connection was lost: report it (the reconnection backs
    /// off and tries again).
    private func failed(_ error: RedisError) {
        eventLoop.assertInEventLoop()
        releaseWaiters(failing: nil)
        if up.exchange(false, ordering: .relaxed) || !everSubscribed {
            onDown(error)
        }
    }

    private func received(_ reply: RedisReply, on connection: RedisConnection) {
        eventLoop.assertInEventLoop()
        guard let current = reconnection.connection, current.channel === connection.channel else { return }
        // Anything from the server proves it alive.
        pingOutstandingSince = nil
        heardSinceTick = true
        if case .error(let message) = reply {
            refused(message)
            return
        }
        guard let parts = reply.array, let pushed = parts.first?.string else { return }
        // Sharded pub/sub's pushes are kinds of their own, of the same shapes.
        let kind = configuration.sharded ? Self.shardedKinds[pushed] ?? pushed : pushed
        switch (kind, progress) {
        case ("unsubscribe", _) where configuration.sharded && parts.count == 3:
            // The server dropped a channel this subscriber still wants: its slot moved.
            guard let channel = parts[1].string, interests[channel] != nil else { return }
            interests[channel]!.confirmed = false
            onMoved(channel)
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
        case ("subscribe", _) where parts.count == 3:
            guard let channel = parts[1].string else { return }
            confirmed(channel)
            guard case .subscribing(var pending) = progress else { return }
            progress = .live  // releases the progress's reference, so removing does not copy
            pending.remove(channel)
            progress = .subscribing(pending: pending)
            if pending.isEmpty { subscribed(on: current) }
        default:
            break  // "pong" and the like
        }
    }

    /// The connection is gone: no channel is confirmed any more, and whoever waits for one goes on
    /// (the channel is subscribed again on the next connection, see `listen(_:)`), or gets `error`.
    private func releaseWaiters(failing error: RedisError?) {
        var waiting: [EventLoopPromise<Void>] = []
        for channel in Array(interests.keys) {
            interests[channel]!.confirmed = false
            waiting += interests[channel]!.waiters
            interests[channel]!.waiters = []
        }
        for waiter in waiting {
            if let error { waiter.fail(error) } else { waiter.succeed() }
        }
    }

    /// The server refused a (S)SUBSCRIBE. Sharded, a `MOVED` names the slot this node does not
    /// serve: its channels count as moved (`onMoved`), and whoever waits for them gets the error.
    /// Anything else is a failure of the connection's purpose: it is dropped and made again.
    private func refused(_ message: String) {
        eventLoop.assertInEventLoop()
        guard configuration.sharded, let redirect = RedisRedirect(error: message) else {
            reconnection.connection?.handler.value.close(.server(message))
            return
        }
        var waiting: [EventLoopPromise<Void>] = []
        var refusedChannels: [String] = []
        for channel in interests.keys where RedisKeySlot.of(channel) == redirect.slot {
            waiting += interests[channel]!.waiters
            interests[channel]!.waiters = []
            interests[channel]!.confirmed = false
            refusedChannels.append(channel)
            onMoved(channel)
        }
        // After `onMoved`: a waiter that resumes finds the channel reported.
        for waiter in waiting { waiter.fail(RedisError.server(message)) }
        // Refused while (re)subscribing: the others need not wait for it to be up.
        if case .subscribing(var pending) = progress, let current = reconnection.connection {
            for channel in refusedChannels { pending.remove(channel) }
            progress = .subscribing(pending: pending)
            if pending.isEmpty { subscribed(on: current) }
        }
    }

    private static let shardedKinds = ["smessage": "message", "ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"]

    /// Redis confirmed `channel`: whoever waits for it may go on.
    private func confirmed(_ channel: String) {
        guard var interest = interests[channel] else { return }
        interest.confirmed = true
        let waiters = interest.waiters
        interest.waiters = []
        interests[channel] = interest
        for waiter in waiters { waiter.succeed() }
    }

    /// Every channel is confirmed on `connection`: runs `onSubscribed`, holding messages meanwhile.
    private func subscribed(on connection: RedisConnection) {
        progress = .catchingUp(held: [])
        up.store(true, ordering: .relaxed)
        let reconnected = everSubscribed
        everSubscribed = true
        let onSubscribed = self.onSubscribed
        Task {
            let disposition = await onSubscribed(reconnected)
            eventLoop.execute { [self] in caughtUp(disposition, on: connection) }
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
        sweep(now)
        guard let connection = reconnection.connection else { return }
        if let since = pingOutstandingSince, now - since > .init(configuration.deadAfter) {
            connection.handler.value.close(.connectionLost("no answer to PING for \(configuration.deadAfter)"))
            return
        }
        // A subscriber that hears events needs no ping: only one that heard nothing for
        // `pingInterval` asks (each ping is a wake-up for the server and for this loop).
        if heardSinceTick {
            heardSinceTick = false
            lastSign = now
        }
        if now - lastSign >= .init(configuration.pingInterval) {
            connection.handler.value.sendWithoutReply([["PING"]])
            lastSign = now
            if pingOutstandingSince == nil { pingOutstandingSince = now }
        }
    }
}

/// A channel asked for with `listen(_:)`.
private struct Interest {
    /// Confirmed on the connection that is up.
    var confirmed = false
    /// Callers of `listen(_:)` waiting for the confirmation.
    var waiters: [EventLoopPromise<Void>] = []
    /// Since when `stillWanted` says no.
    var idleSince: NIODeadline?
}

import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A dedicated pub/sub connection on its own thread: subscribes to channels and hands every
/// message to a callback, in the order Redis sent them.
///
/// It polls the socket (never blocking in hiredis without data), pings every `pingInterval` and
/// declares the connection dead when a ping goes unanswered for `deadAfter`, so a lost or frozen
/// server is noticed within about two seconds even when no message flows. Then it reconnects with
/// capped exponential backoff and jitter, and resubscribes.
public final class RedisSubscriber: Sendable {
    public struct Configuration: Sendable {
        public var url: RedisURL
        public var channels: [String]
        public var connectTimeout: Duration = .seconds(1)
        public var pingInterval: Duration = .milliseconds(500)
        public var deadAfter: Duration = .milliseconds(1500)
        public var backoff = Backoff()

        public init(url: RedisURL, channels: [String]) {
            self.url = url
            self.channels = channels
        }
    }

    /// What the handler wants after an event.
    public enum Disposition: Sendable {
        case proceed
        /// Drop the connection and subscribe again (after backoff): for a handler that could not
        /// do what `.subscribed` requires of it (such as filling the gap of an outage).
        case resubscribe
    }

    /// What the subscriber reports, on its own thread.
    public enum Event: Sendable {
        /// Subscribed to every channel (again, after a loss when `reconnected`). Messages published
        /// from now on will arrive; the handler runs before any of them is handed over, so it can
        /// fill the gap of the outage first.
        case subscribed(reconnected: Bool)
        /// A message on a channel.
        case message(channel: [UInt8], payload: [UInt8])
        /// The connection is down (and will be retried).
        case down(RedisError)
    }

    public let configuration: Configuration
    private let handler: @Sendable (Event) -> Disposition
    private let stopped = Atomic<Bool>(false)
    private let up = Atomic<Bool>(false)
    private let thread = Mutex<DedicatedThread?>(nil)

    public init(configuration: Configuration, handler: @escaping @Sendable (Event) -> Disposition) {
        self.configuration = configuration
        self.handler = handler
    }

    /// True while subscribed.
    public var isSubscribed: Bool { up.load(ordering: .relaxed) }

    public func start() {
        let thread = DedicatedThread(name: "redis-subscriber") { [self] in work() }
        self.thread.withLock { $0 = thread }
    }

    /// Stops the thread (within a poll interval) and waits for it.
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        thread.withLock { $0 }?.join()
    }

    private func work() {
        var backoff = configuration.backoff
        var everSubscribed = false
        while !stopped.load(ordering: .relaxed) {
            do {
                let connection = try RedisConnection(url: configuration.url, connectTimeout: configuration.connectTimeout, commandTimeout: configuration.deadAfter)
                try connection.append(["SUBSCRIBE"] + configuration.channels.map { RedisArgument($0) })
                try connection.flush()
                try serve(connection) { () throws(RedisError) in
                    up.store(true, ordering: .relaxed)
                    let disposition = handler(.subscribed(reconnected: everSubscribed))
                    everSubscribed = true
                    guard disposition == .proceed else { throw .connectionLost("the handler asked to subscribe again") }
                    backoff.reset()
                }
            } catch {
                if up.exchange(false, ordering: .relaxed) || !everSubscribed {
                    _ = handler(.down(error))
                }
            }
            up.store(false, ordering: .relaxed)
            // Back off before the next attempt, in small steps so stop() is prompt.
            let resume = ContinuousClock.now + backoff.next()
            while !stopped.load(ordering: .relaxed), ContinuousClock.now < resume {
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
    }

    /// Reads until the connection fails or the subscriber stops. Calls `onSubscribed` once every
    /// channel is confirmed.
    private func serve(_ connection: RedisConnection, onSubscribed: () throws(RedisError) -> Void) throws(RedisError) {
        var confirmed = 0
        var lastSent = ContinuousClock.now
        var pingOutstandingSince: ContinuousClock.Instant? = nil
        var descriptor = pollfd(fd: connection.fileDescriptor, events: Int16(POLLIN), revents: 0)
        while !stopped.load(ordering: .relaxed) {
            descriptor.revents = 0
            let ready = poll(&descriptor, 1, 100)
            if ready < 0 && errno != EINTR { throw .connectionLost("poll: \(String(cString: strerror(errno)))") }
            if ready > 0 {
                try connection.read()
                pingOutstandingSince = nil  // anything from the server proves it alive
                while let reply = try connection.bufferedReply() {
                    guard let parts = reply.array, let kind = parts.first?.string else { continue }
                    switch kind {
                    case "message" where parts.count == 3:
                        _ = handler(.message(channel: parts[1].bytes ?? [], payload: parts[2].bytes ?? []))
                    case "subscribe":
                        confirmed += 1
                        if confirmed == configuration.channels.count { try onSubscribed() }
                    default:
                        break  // "pong" and the like
                    }
                }
            }
            let now = ContinuousClock.now
            if let since = pingOutstandingSince, now - since > configuration.deadAfter {
                throw .connectionLost("no answer to PING for \(configuration.deadAfter)")
            }
            if now - lastSent >= configuration.pingInterval {
                try connection.append(["PING"])
                try connection.flush()
                lastSent = now
                if pingOutstandingSince == nil { pingOutstandingSince = now }
            }
        }
    }
}

import Synchronization

/// A node's fan-out: every live event from the broker goes to each local subscriber of its room.
///
/// Each event arrives encoded once (`StoredMessage.frame`); the hub hands the same bytes to every
/// subscriber's bounded queue. A subscriber whose queue is full is disconnected, never buffered
/// without limit. The hub knows nothing of HTTP or Redis.
public final class Hub: LiveEventSink {
    /// Why a new stream was refused.
    public enum SubscribeRefusal: Error, Sendable {
        /// The node holds `maxConnections` streams already.
        case atCapacity
        /// The node is draining.
        case draining
    }

    private struct State {
        var rooms: [RoomName: [ObjectIdentifier: Subscription]] = [:]
        var count = 0
        var draining = false
    }

    /// Messages that may wait for one subscriber before it is disconnected as slow.
    public let subscriberBuffer: Int
    /// The most open streams; beyond it `subscribe` refuses.
    public let maxConnections: Int
    public let metrics: RelayMetrics
    private let state = Mutex(State())

    public init(subscriberBuffer: Int, maxConnections: Int, metrics: RelayMetrics) {
        self.subscriberBuffer = max(1, subscriberBuffer)
        self.maxConnections = maxConnections
        self.metrics = metrics
    }

    /// Open streams on this node.
    public var connectionCount: Int { state.withLock { $0.count } }

    /// True once draining began: new streams are refused.
    public var isDraining: Bool { state.withLock { $0.draining } }

    /// Registers a subscriber of `room`. It queues live messages at once, but wakes its writer only
    /// after `goLive(after:)`, so the caller can write a replay first and lose nothing in between.
    /// - Parameters:
    ///   - after: the id the subscriber already has: nothing at or below it is queued.
    ///   - abort: closes the subscriber's connection (used when it is too slow).
    public func subscribe(room: RoomName, after: MessageID? = nil, abort: @escaping @Sendable () -> Void) throws(SubscribeRefusal) -> Subscription {
        let subscription = Subscription(room: room, after: after, capacity: subscriberBuffer, now: MonotonicClock.nanoseconds(), abort: abort)
        try state.withLock { (state) throws(SubscribeRefusal) in
            if state.draining { throw .draining }
            if state.count >= maxConnections { throw .atCapacity }
            state.rooms[room, default: [:]][ObjectIdentifier(subscription)] = subscription
            state.count += 1
        }
        metrics.openStreams.increment()
        return subscription
    }

    /// Forgets a subscriber (its stream ended). Safe to call more than once.
    public func unsubscribe(_ subscription: Subscription) {
        let removed = state.withLock { state in
            remove(subscription, from: &state)
        }
        subscription.close(.finished)
        if removed { metrics.openStreams.decrement() }
    }

    /// Hands `message` to every subscriber of its room. Called by the broker, in id order per room.
    public func deliver(_ message: StoredMessage) {
        var slow: [Subscription] = []
        let delivered = state.withLock { state -> Int in
            guard let subscribers = state.rooms[message.room] else { return 0 }
            var delivered = 0
            for subscription in subscribers.values {
                if subscription.enqueue(message) {
                    delivered += 1
                } else {
                    slow.append(subscription)
                }
            }
            for subscription in slow {
                _ = remove(subscription, from: &state)
            }
            return delivered
        }
        if delivered > 0 { metrics.eventsDelivered.increment(by: Int64(delivered)) }
        for subscription in slow {
            subscription.abortConnection()
            metrics.openStreams.decrement()
            metrics.droppedSlow.increment()
        }
    }

    public func resumePositions() -> [RoomName: MessageID] {
        let rooms = state.withLock { $0.rooms }
        var positions: [RoomName: MessageID] = [:]
        for (room, subscribers) in rooms {
            if let oldest = subscribers.values.compactMap(\.position).min() {
                positions[room] = oldest
            }
        }
        return positions
    }

    /// Marks a heartbeat due on every subscriber that has written nothing for `interval`.
    public func heartbeat(interval: Duration, now: UInt64 = MonotonicClock.nanoseconds()) {
        let intervalNanoseconds = UInt64(interval.components.seconds) * 1_000_000_000
            + UInt64(interval.components.attoseconds / 1_000_000_000)
        guard now > intervalNanoseconds else { return }
        let idleSince = now - intervalNanoseconds
        let all = state.withLock { state in state.rooms.values.flatMap(\.values) }
        for subscription in all {
            subscription.heartbeatIfIdle(since: idleSince, now: now)
        }
    }

    /// Sends heartbeats until cancelled: checks every quarter interval, so an idle stream gets one
    /// between 1 and 1.25 intervals after its last write.
    public func runHeartbeats(interval: Duration) async {
        let tick = interval / 4
        while !Task.isCancelled {
            do { try await Task.sleep(for: tick) } catch { return }
            heartbeat(interval: interval)
        }
    }

    /// Refuses new streams from now on and returns the open ones, in random order.
    public func beginDrain() -> [Subscription] {
        state.withLock { state in
            state.draining = true
            return state.rooms.values.flatMap(\.values).shuffled()
        }
    }

    /// Drains the node: refuses new streams, then ends the open ones spread evenly over `spread`,
    /// each with a random reconnection delay from `retry`, so clients do not all reconnect to the
    /// other nodes at once. Returns when every stream has ended or `deadline` has passed.
    public func drain(spread: Duration, retry: ClosedRange<Int>, deadline: Duration) async {
        let start = ContinuousClock.now
        let subscriptions = beginDrain()
        let step = subscriptions.isEmpty ? .zero : spread / subscriptions.count
        for (index, subscription) in subscriptions.enumerated() {
            if index > 0, step > .zero { try? await Task.sleep(for: step) }
            subscription.close(.draining(retryMilliseconds: Int.random(in: retry)))
            metrics.droppedDraining.increment()
        }
        while connectionCount > 0, ContinuousClock.now - start < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    private func remove(_ subscription: Subscription, from state: inout State) -> Bool {
        let key = ObjectIdentifier(subscription)
        guard state.rooms[subscription.room]?.removeValue(forKey: key) != nil else { return false }
        if state.rooms[subscription.room]?.isEmpty == true {
            state.rooms[subscription.room] = nil
        }
        state.count -= 1
        return true
    }
}

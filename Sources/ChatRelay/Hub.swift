import NIOCore
import Synchronization

/// A node's fan-out: every live event from the broker goes to each local subscriber of its room.
///
/// Each event arrives encoded once (`StoredMessage.chunk`). The hub posts it once to each event
/// loop that has subscribers of its room (`LoopFanout`), and that loop writes the same bytes to
/// every one of them. A subscriber that falls too far behind is disconnected, never buffered
/// without limit. The hub knows nothing of HTTP or Redis.
public final class Hub: LiveEventSink {
    /// Why a new stream was refused.
    public enum SubscribeRefusal: Error, Sendable {
        /// The node holds `maxConnections` streams already.
        case atCapacity
        /// The node is draining.
        case draining
    }

    /// The event loops that have subscribers of one room, with how many each has.
    private struct Route {
        var fanouts: [LoopFanout] = []
        var counts: [Int] = []
    }

    private struct State {
        var routes: [RoomName: Route] = [:]
        var subscriptions: [ObjectIdentifier: Subscription] = [:]
        var fanouts: [ObjectIdentifier: LoopFanout] = [:]
        var draining = false
    }

    /// Events that may wait for one subscriber before it is disconnected as slow.
    public let subscriberBuffer: Int
    /// The most open streams; beyond it `subscribe` refuses.
    public let maxConnections: Int
    public let metrics: RelayMetrics
    public let presence: PresenceBook
    private let state = Mutex(State())

    public init(
        subscriberBuffer: Int, maxConnections: Int, metrics: RelayMetrics,
        presence: PresenceBook = PresenceBook(node: "local", cap: 100)
    ) {
        self.subscriberBuffer = max(1, subscriberBuffer)
        self.maxConnections = maxConnections
        self.metrics = metrics
        self.presence = presence
    }

    /// Sends each room's coalesced presence changes (`PresenceBook.flush`) to its streams that
    /// asked for them, every `interval`, until cancelled.
    public func runPresenceFlushes(interval: Duration) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            for event in presence.flush() {
                deliver(event)
            }
        }
    }

    /// Open streams on this node.
    public var connectionCount: Int { state.withLock { $0.subscriptions.count } }

    /// True once draining began: new streams are refused.
    public var isDraining: Bool { state.withLock { $0.draining } }

    /// Registers a subscriber of `room` writing to `output`. Events published from now on reach
    /// it; it writes them only after `goLive(after:)`, so the caller can write a replay first and
    /// lose nothing in between.
    ///
    /// Why nothing is lost: the subscriber is posted to its loop's fan-out here, after the room's
    /// route includes that loop, through the same ordered inbox as events. An event posted to that
    /// inbox before it was stored before this returns, so before the caller's replay read starts,
    /// and the replay has it; an event posted after it is written to it (queued until it goes
    /// live). An event whose delivery did not see the new route was stored before it, too.
    /// - Parameter after: the id the subscriber already has: nothing at or below it is written.
    public func subscribe(room: RoomName, after: MessageID? = nil, output: any StreamOutput) throws(SubscribeRefusal) -> Subscription {
        try subscribe(rooms: [room], after: [after], output: output)
    }

    /// Registers one stream of several rooms, as `subscribe(room:after:output:)` does one: a
    /// single subscriber (one place in `maxConnections`) that takes part in each room's events.
    /// - Parameter after: per room, in the order of `rooms` (which has no room twice), the id the
    ///   subscriber already has.
    /// - Parameter presence: the stream gets `event: presence` of its rooms: who is in each as it
    ///   goes live, then the changes.
    public func subscribe(
        rooms: [RoomName], after: [MessageID?], presence: Bool = false, output: any StreamOutput
    ) throws(SubscribeRefusal) -> Subscription {
        let loop = output.eventLoop
        let subscription = try state.withLock { (state) throws(SubscribeRefusal) -> Subscription in
            if state.draining { throw .draining }
            if state.subscriptions.count >= maxConnections { throw .atCapacity }
            let key = ObjectIdentifier(loop)
            let fanout: LoopFanout
            if let existing = state.fanouts[key] {
                fanout = existing
            } else {
                fanout = LoopFanout(eventLoop: loop, hub: self)
                state.fanouts[key] = fanout
            }
            let subscription = Subscription(
                rooms: rooms, after: after, capacity: subscriberBuffer, presence: presence ? self.presence : nil, output: output,
                fanout: fanout, now: MonotonicClock.nanoseconds())
            state.subscriptions[ObjectIdentifier(subscription)] = subscription
            for room in rooms {
                var route = state.routes.removeValue(forKey: room) ?? Route()
                if route.fanouts.isEmpty { metrics.subscribedRooms.increment() }
                if let index = route.fanouts.firstIndex(where: { $0 === fanout }) {
                    route.counts[index] += 1
                } else {
                    route.fanouts.append(fanout)
                    route.counts.append(1)
                }
                state.routes[room] = route
            }
            return subscription
        }
        subscription.fanout.post(subscription)
        metrics.openStreams.increment()
        return subscription
    }

    /// Forgets a subscriber and ends its stream. Safe to call more than once, from any thread.
    public func unsubscribe(_ subscription: Subscription) {
        let removed = state.withLock { forget(subscription, in: &$0) }
        subscription.close(.finished)
        if removed { metrics.openStreams.decrement() }
    }

    /// Called by a fan-out that closed a subscriber as too slow.
    func droppedAsSlow(_ subscription: Subscription) {
        let removed = state.withLock { forget(subscription, in: &$0) }
        if removed {
            metrics.openStreams.decrement()
            metrics.droppedSlow.increment()
        }
    }

    /// Hands `message` to every subscriber of its room. Called by the broker, in id order per room;
    /// returns at once (the writes happen on the subscribers' event loops).
    public func deliver(_ message: StoredMessage) {
        guard let fanouts = state.withLock({ $0.routes[message.room]?.fanouts }) else { return }
        for fanout in fanouts {
            fanout.post(message)
        }
    }

    /// For every room with subscribers here that `include` accepts, the id after which the least
    /// advanced of them (on any event loop) still needs messages.
    public func resumePositions(of include: @escaping @Sendable (RoomName) -> Bool) async -> [RoomName: MessageID] {
        var positions: [RoomName: MessageID] = [:]
        for fanout in allFanouts() {
            let own = (try? await fanout.eventLoop.submit { fanout.positions(of: include) }.get()) ?? [:]
            positions.merge(own) { min($0, $1) }
        }
        return positions
    }

    public func hasSubscribers(room: RoomName) -> Bool {
        state.withLock { $0.routes[room] != nil }
    }

    /// Writes a heartbeat to every subscriber that has written nothing for `interval`.
    public func heartbeat(interval: Duration, now: UInt64 = MonotonicClock.nanoseconds()) {
        let intervalNanoseconds =
            UInt64(interval.components.seconds) * 1_000_000_000
            + UInt64(interval.components.attoseconds / 1_000_000_000)
        guard now > intervalNanoseconds else { return }
        let idleSince = now - intervalNanoseconds
        for fanout in allFanouts() {
            fanout.eventLoop.execute { fanout.heartbeat(idleSince: idleSince, now: now) }
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
            return state.subscriptions.values.shuffled()
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

    /// What the hub and its fan-outs hold: each must be back to zero once every stream ended.
    public struct Bookkeeping: Equatable, Sendable {
        /// Open streams.
        public var subscriptions: Int
        /// Rooms with subscribers, and (room, event loop) routes to them.
        public var rooms: Int
        public var routes: Int
        /// Subscribers in the fan-outs' lists, and events or subscribers queued for them.
        public var fanoutSubscribers: Int
        public var fanoutQueued: Int
    }

    /// Counts what the hub and every fan-out hold now (asking each event loop in turn).
    public func bookkeeping() async -> Bookkeeping {
        var counts = state.withLock { state in
            Bookkeeping(
                subscriptions: state.subscriptions.count, rooms: state.routes.count,
                routes: state.routes.values.reduce(0) { $0 + $1.fanouts.count }, fanoutSubscribers: 0, fanoutQueued: 0)
        }
        for fanout in allFanouts() {
            let (subscribers, queued) = (try? await fanout.eventLoop.submit { fanout.heldCounts() }.get()) ?? (0, 0)
            counts.fanoutSubscribers += subscribers
            counts.fanoutQueued += queued
        }
        return counts
    }

    /// Every event loop's fan-out (one per loop that ever had a subscriber).
    private func allFanouts() -> [LoopFanout] {
        state.withLock { Array($0.fanouts.values) }
    }

    private func forget(_ subscription: Subscription, in state: inout State) -> Bool {
        guard state.subscriptions.removeValue(forKey: ObjectIdentifier(subscription)) != nil else { return false }
        for room in subscription.rooms {
            guard var route = state.routes[room],
                let index = route.fanouts.firstIndex(where: { $0 === subscription.fanout })
            else { continue }
            route.counts[index] -= 1
            if route.counts[index] == 0 {
                route.fanouts.remove(at: index)
                route.counts.remove(at: index)
            }
            if route.fanouts.isEmpty {
                state.routes[room] = nil
                metrics.subscribedRooms.decrement()
            } else {
                state.routes[room] = route
            }
        }
        return true
    }
}

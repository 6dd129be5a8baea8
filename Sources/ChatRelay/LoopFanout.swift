import NIOCore
import Synchronization

/// The subscribers of one event loop, and the events on their way to them.
///
/// The hub posts each event once per event loop that has subscribers of its room. The first post
/// schedules one task on the loop; that task writes every queued event's shared bytes to every
/// local subscriber of its room and flushes each of them once. So a burst of events costs one
/// hop per loop and one flush (one `writev`) per subscriber.
///
/// New subscribers come through the same inbox as events, so each takes part in exactly the
/// events posted after it (see `Hub.subscribe`).
///
/// Invariant that makes `@unchecked Sendable` true: `rooms`, `spare`, `run` and `touched` are used
/// only on `eventLoop` (subscribers are added from the inbox and removed there); `inbox` is a
/// `Mutex`; the rest is immutable.
final class LoopFanout: @unchecked Sendable {
    let eventLoop: any EventLoop
    private unowned let hub: Hub

    // loop-confined
    private var rooms: [RoomName: [Subscription]] = [:]
    /// The inbox's previous array, reused so that swapping batches allocates nothing.
    private var spare: [Entry] = []
    /// The events of a batch between two arrivals of subscribers.
    private var run: [StoredMessage] = []
    private var touched: [RoomName] = []

    /// What the inbox holds, in the order it was posted.
    private enum Entry {
        case event(StoredMessage)
        /// A new subscriber: it takes part in every event posted after it.
        case subscriber(Subscription)
    }

    private struct Inbox {
        var entries: [Entry] = []
        var scheduled = false
    }
    private let inbox = Mutex(Inbox())

    init(eventLoop: any EventLoop, hub: Hub) {
        self.eventLoop = eventLoop
        self.hub = hub
    }

    /// Queues `message` for this loop's subscribers of its room; from any thread. Events of a room
    /// must be posted in id order, and they are written in that order.
    func post(_ message: StoredMessage) {
        enqueue(.event(message))
    }

    /// Adds a subscriber; from any thread. It receives every event posted after this call, and
    /// none posted before, even those the loop has not written yet: its replay, read after this
    /// call, has those.
    func post(_ subscription: Subscription) {
        enqueue(.subscriber(subscription))
    }

    private func enqueue(_ entry: Entry) {
        let schedule = inbox.withLock { inbox in
            inbox.entries.append(entry)
            guard !inbox.scheduled else { return false }
            inbox.scheduled = true
            return true
        }
        if schedule {
            eventLoop.execute { self.deliverQueued() }
        }
    }

    /// Adds a subscriber, on the loop.
    private func add(_ subscription: Subscription) {
        guard !subscription.ended else { return }
        subscription.slot = rooms[subscription.room, default: []].count
        rooms[subscription.room, default: []].append(subscription)
    }

    /// Removes a subscriber, on the loop; harmless if it is not here.
    func remove(_ subscription: Subscription) {
        let slot = subscription.slot
        guard slot >= 0, var subscribers = rooms.removeValue(forKey: subscription.room),
              slot < subscribers.count, subscribers[slot] === subscription
        else { return }
        let last = subscribers.removeLast()
        if slot < subscribers.count {
            subscribers[slot] = last
            last.slot = slot
        }
        subscription.slot = -1
        if !subscribers.isEmpty { rooms[subscription.room] = subscribers }
    }

    private func deliverQueued() {
        // Take the spare array out first, so the inbox gets its storage uniquely and appending to
        // it does not copy.
        var batch: [Entry] = []
        swap(&batch, &spare)
        inbox.withLock { inbox in
            swap(&inbox.entries, &batch)
            inbox.scheduled = false
        }
        let now = MonotonicClock.nanoseconds()
        var delivered = 0
        var slow: [Subscription] = []
        for entry in batch {
            switch entry {
            case .event(let message):
                run.append(message)
            case .subscriber(let subscription):
                // The events before it are not its own.
                delivered += deliverRun(now: now, slow: &slow)
                add(subscription)
            }
        }
        delivered += deliverRun(now: now, slow: &slow)
        batch.removeAll(keepingCapacity: true)
        spare = batch
        for subscription in slow where subscription.closeAsSlowOnLoop() {
            hub.droppedAsSlow(subscription)
        }
        if delivered > 0 { hub.metrics.eventsDelivered.increment(by: Int64(delivered)) }
    }

    /// Writes the events of `run` to their rooms' subscribers and empties it; returns how many
    /// deliveries that made, and adds the subscribers found too slow to `slow`.
    private func deliverRun(now: UInt64, slow: inout [Subscription]) -> Int {
        guard !run.isEmpty else { return 0 }
        var delivered = 0
        for message in run where !touched.contains(message.room) {
            touched.append(message.room)
        }
        // Subscriber by subscriber: each gets its room's events of the run and one flush, so its
        // connection's objects are visited once per batch, not once per event and again to
        // flush (with thousands of subscribers, those visits are cache misses).
        for room in touched {
            guard let subscribers = rooms[room] else { continue }
            let events = touched.count == 1 ? run : run.filter { $0.room == room }
            for subscription in subscribers {
                if let taken = subscription.offer(events, now: now) {
                    delivered += taken
                } else {
                    slow.append(subscription)
                }
            }
        }
        touched.removeAll(keepingCapacity: true)
        run.removeAll(keepingCapacity: true)
        return delivered
    }

    /// Writes a heartbeat to every subscriber idle since `idleSince`, on the loop.
    func heartbeat(idleSince: UInt64, now: UInt64) {
        for subscribers in rooms.values {
            for subscription in subscribers {
                subscription.heartbeatIfIdle(since: idleSince, now: now)
            }
        }
    }

    /// For each room, the least advanced position of this loop's subscribers, on the loop.
    func positions() -> [RoomName: MessageID] {
        var positions: [RoomName: MessageID] = [:]
        for (room, subscribers) in rooms {
            if let oldest = subscribers.lazy.compactMap(\.floor).min() {
                positions[room] = oldest
            }
        }
        return positions
    }
}

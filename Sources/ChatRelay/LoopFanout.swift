import NIOCore
import Synchronization

/// The subscribers of one event loop, and the events on their way to them.
///
/// The hub posts each event once per event loop that has subscribers of its room. The first post
/// schedules a task on the loop; that task takes every queued event and writes its shared bytes
/// to every local subscriber of its room, each subscriber's events together with one flush. So a
/// burst of events costs one hop per loop and one flush (one `writev`) per subscriber.
///
/// The writes are done in turns of at most `writesPerTurn`, each a task of its own, so the loop
/// reads requests and writes other responses (a `201` among them) between turns instead of after
/// the last of thousands of subscribers. Events are still written in order: the next batch is
/// taken only when this one is done.
///
/// New subscribers come through the same inbox as events, so each takes part in exactly the
/// events posted after it (see `Hub.subscribe`).
///
/// Invariant that makes `@unchecked Sendable` true: every `var` but `inbox` is used only on
/// `eventLoop`, asserted (subscribers are added from the inbox and removed there); `inbox` is a
/// `Mutex`; the rest is immutable.
final class LoopFanout: @unchecked Sendable {
    let eventLoop: any EventLoop
    private unowned let hub: Hub

    /// Writes done in one task before the rest of a batch waits for the loop's next turn.
    static let writesPerTurn = 256

    /// A subscriber of a room: the stream, and the room's index among the stream's rooms.
    private struct Member {
        let subscription: Subscription
        let room: Int
    }

    // loop-confined
    private var rooms: [RoomName: [Member]] = [:]
    /// The inbox's previous array, reused so that swapping batches allocates nothing.
    private var spare: [Entry] = []
    /// The batch being written, as steps in inbox order, and the next step.
    private var steps: [Step] = []
    private var nextStep = 0
    /// The subscribers of the current step's room as the step began, and the next of them.
    private var stepSubscribers: [Member] = []
    private var nextSubscriber = 0
    private var stepStarted = false

    /// What the inbox holds, in the order it was posted.
    private enum Entry {
        case event(StoredMessage)
        /// A new subscriber: it takes part in every event posted after it.
        case subscriber(Subscription)
    }

    /// A batch's work: events of one room for its subscribers, or a subscriber to add.
    private enum Step {
        case write(RoomName, [StoredMessage])
        case add(Subscription)
    }

    private struct Inbox {
        var entries: [Entry] = []
        /// A task is scheduled, or a batch is being written: posts only queue.
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

    /// Adds a subscriber to each of its rooms, on the loop.
    private func add(_ subscription: Subscription) {
        eventLoop.assertInEventLoop()
        guard !subscription.ended else { return }
        for (index, room) in subscription.rooms.enumerated() {
            subscription.places[index].slot = rooms[room, default: []].count
            rooms[room, default: []].append(Member(subscription: subscription, room: index))
        }
    }

    /// Removes a subscriber from each of its rooms, on the loop; harmless if it is not here.
    func remove(_ subscription: Subscription) {
        eventLoop.assertInEventLoop()
        for (index, room) in subscription.rooms.enumerated() {
            let slot = subscription.places[index].slot
            guard slot >= 0, var members = rooms.removeValue(forKey: room) else { continue }
            guard slot < members.count, members[slot].subscription === subscription else {
                rooms[room] = members
                continue
            }
            let last = members.removeLast()
            if slot < members.count {
                members[slot] = last
                last.subscription.places[last.room].slot = slot
            }
            subscription.places[index].slot = -1
            if !members.isEmpty { rooms[room] = members }
        }
    }

    /// Takes the queued entries as a batch, then writes it.
    private func deliverQueued() {
        eventLoop.assertInEventLoop()
        // Take the spare array out first, so the inbox gets its storage uniquely and appending to
        // it does not copy.
        var batch: [Entry] = []
        swap(&batch, &spare)
        inbox.withLock { inbox in
            swap(&inbox.entries, &batch)
        }
        var run: [StoredMessage] = []
        for entry in batch {
            switch entry {
            case .event(let message) where message.kind == .message:
                run.append(message)
            case .event(let signal):
                // A signal is a step of its own, in its place among its room's messages.
                appendSteps(for: run)
                run.removeAll()
                steps.append(.write(signal.room, [signal]))
            case .subscriber(let subscription):
                // The events before it are not its own.
                appendSteps(for: run)
                run.removeAll()
                steps.append(.add(subscription))
            }
        }
        appendSteps(for: run)
        batch.removeAll(keepingCapacity: true)
        spare = batch
        writeTurn()
    }

    /// One step per room of `run`, in the order the rooms first appear.
    private func appendSteps(for run: [StoredMessage]) {
        guard let first = run.first?.room else { return }
        guard run.contains(where: { $0.room != first }) else {
            steps.append(.write(first, run))
            return
        }
        var seen: [RoomName] = []
        for message in run where !seen.contains(message.room) {
            seen.append(message.room)
            steps.append(.write(message.room, run.filter { $0.room == message.room }))
        }
    }

    /// Writes the batch's steps until `writesPerTurn` writes are done; the rest waits for a task
    /// of its own. When the batch is done, takes the next one if events came meanwhile.
    private func writeTurn() {
        eventLoop.assertInEventLoop()
        let now = MonotonicClock.nanoseconds()
        var budget = Self.writesPerTurn
        var delivered = 0
        var slow: [Subscription] = []
        while nextStep < steps.count, budget > 0 {
            switch steps[nextStep] {
            case .add(let subscription):
                add(subscription)
            case .write(let room, let events):
                if !stepStarted {
                    // A snapshot: subscribers leaving between turns do not move the others.
                    stepSubscribers = rooms[room] ?? []
                    nextSubscriber = 0
                    stepStarted = true
                }
                // Subscriber by subscriber: its events of the batch and one flush, so its
                // connection's objects are visited once per batch (with thousands of
                // subscribers, each visit is a cache miss).
                while nextSubscriber < stepSubscribers.count, budget > 0 {
                    let member = stepSubscribers[nextSubscriber]
                    nextSubscriber += 1
                    if let taken = member.subscription.offer(events, room: member.room, now: now) {
                        delivered += taken
                        budget -= max(taken, 1)
                    } else {
                        slow.append(member.subscription)
                    }
                }
                guard nextSubscriber == stepSubscribers.count else { continue }
                stepSubscribers.removeAll(keepingCapacity: true)
                stepStarted = false
            }
            nextStep += 1
        }
        closeAsSlow(slow)
        if delivered > 0 { hub.metrics.eventsDelivered.increment(by: Int64(delivered)) }
        if nextStep < steps.count {
            eventLoop.execute { self.writeTurn() }
            return
        }
        steps.removeAll(keepingCapacity: true)
        nextStep = 0
        let more = inbox.withLock { inbox in
            if inbox.entries.isEmpty { inbox.scheduled = false }
            return inbox.scheduled
        }
        if more {
            eventLoop.execute { self.deliverQueued() }
        }
    }

    /// Writes a heartbeat to every subscriber idle since `idleSince`, on the loop, and closes
    /// those stalled (`Subscription.heartbeatIfIdle`) as slow.
    func heartbeat(idleSince: UInt64, now: UInt64) {
        eventLoop.assertInEventLoop()
        var stalled: [Subscription] = []
        // A stream of several rooms is met once per room; after the first its last write is now.
        for members in rooms.values {
            for member in members where !member.subscription.heartbeatIfIdle(since: idleSince, now: now) {
                stalled.append(member.subscription)
            }
        }
        closeAsSlow(stalled)
    }

    /// Closes `subscriptions` as too slow, on the loop, and has the hub forget each (once, however
    /// often it is listed or was closed for another reason first).
    private func closeAsSlow(_ subscriptions: [Subscription]) {
        for subscription in subscriptions where subscription.closeAsSlowOnLoop() {
            hub.droppedAsSlow(subscription)
        }
    }

    /// The subscribers in the rooms' lists, and the entries queued or being written, on the loop.
    func heldCounts() -> (subscribers: Int, queued: Int) {
        eventLoop.assertInEventLoop()
        let queued = inbox.withLock { $0.entries.count } + steps.count - nextStep
        return (rooms.values.reduce(0) { $0 + $1.count }, queued)
    }

    /// For each room `include` accepts, the least advanced position of this loop's subscribers, on the loop.
    func positions(of include: (RoomName) -> Bool) -> [RoomName: MessageID] {
        eventLoop.assertInEventLoop()
        var positions: [RoomName: MessageID] = [:]
        for (room, members) in rooms where include(room) {
            if let oldest = members.lazy.compactMap({ $0.subscription.places[$0.room].floor }).min() {
                positions[room] = oldest
            }
        }
        return positions
    }
}

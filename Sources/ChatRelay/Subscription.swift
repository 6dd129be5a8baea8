import Synchronization

/// One SSE subscriber's place in the hub: a bounded queue of encoded events and the one task
/// (the HTTP response writer) that drains it.
///
/// The hub appends shared `StoredMessage`s (their frames are never copied per subscriber); the
/// writer takes everything pending at once and writes it in one go, so a burst costs one wake-up
/// and one flush per subscriber, not one per message.
public final class Subscription: Sendable {
    /// Why a stream ends.
    public enum CloseReason: Sendable, Equatable {
        /// The buffer filled: the client is not reading fast enough.
        case slow
        /// The node is draining; the client should reconnect after this many milliseconds.
        case draining(retryMilliseconds: Int)
        /// The client went away or the server is stopping.
        case finished
    }

    /// What the writer should do next.
    public enum Next: Sendable {
        /// Write these messages' frames, in order.
        case messages([StoredMessage])
        /// Nothing was written for a heartbeat interval: write a heartbeat comment.
        case heartbeat
        /// Write nothing more and end the stream.
        case closed(CloseReason)
    }

    private struct State {
        var pending: [StoredMessage] = []
        /// Messages at or below this id were already queued or replayed: dropped, so none is sent twice.
        var floor: MessageID?
        /// While false, messages queue up but the writer is not woken (the replay is being written).
        var live = false
        var heartbeatDue = false
        var closed: CloseReason?
        var waiter: CheckedContinuation<Next, Never>?
        /// Monotonic nanoseconds when the writer last took something.
        var lastActivity: UInt64
    }

    public let room: RoomName
    /// The most messages that may wait for one subscriber before it is disconnected as slow.
    public let capacity: Int
    private let state: Mutex<State>
    /// Closes the connection underneath, so a writer blocked on a full socket fails and returns.
    private let abort: @Sendable () -> Void

    init(room: RoomName, after floor: MessageID?, capacity: Int, now: UInt64, abort: @escaping @Sendable () -> Void) {
        self.room = room
        self.capacity = capacity
        self.abort = abort
        self.state = Mutex(State(floor: floor, lastActivity: now))
    }

    /// The newest id this subscriber has (or has queued): it needs only what comes after.
    public var position: MessageID? { state.withLock { $0.floor } }

    /// Queues a message for the writer. Returns false when the buffer is full: the subscription is
    /// then closed as `.slow`, and the hub forgets it and aborts its connection. Messages at or below
    /// the replay floor are skipped (already sent).
    func enqueue(_ message: StoredMessage) -> Bool {
        enum Action {
            case none
            case wake(CheckedContinuation<Next, Never>, [StoredMessage])
            case overflow(CheckedContinuation<Next, Never>?)
        }
        let action: Action = state.withLock { state in
            guard state.closed == nil else { return .none }
            if let floor = state.floor, message.id <= floor { return .none }
            guard state.pending.count < capacity else {
                state.closed = .slow
                state.pending.removeAll()
                return .overflow(state.waiter.take())
            }
            state.pending.append(message)
            // Live messages of a room arrive in id order, so anything at or below this is a repeat.
            state.floor = message.id
            guard state.live, let waiter = state.waiter.take() else { return .none }
            let batch = state.pending
            state.pending.removeAll(keepingCapacity: true)
            return .wake(waiter, batch)
        }
        switch action {
        case .none:
            return true
        case .wake(let waiter, let batch):
            waiter.resume(returning: .messages(batch))
            return true
        case .overflow(let waiter):
            waiter?.resume(returning: .closed(.slow))
            return false
        }
    }

    /// Ends the replay phase: drops queued messages at or below `lastReplayed` and from now on
    /// wakes the writer for every new message.
    public func goLive(after lastReplayed: MessageID?) {
        state.withLock { state in
            if let lastReplayed {
                state.floor = max(state.floor ?? lastReplayed, lastReplayed)
                state.pending.removeAll { $0.id <= lastReplayed }
            }
            state.live = true
        }
    }

    /// Waits for the next thing to write. Returns `.closed` once the subscription is closed and
    /// everything queued before that was taken.
    public func next(now: @escaping @Sendable () -> UInt64 = MonotonicClock.nanoseconds) async -> Next {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Next, Never>) in
                let ready: Next? = state.withLock { state in
                    if !state.pending.isEmpty, state.closed != .slow {
                        let batch = state.pending
                        state.pending.removeAll(keepingCapacity: true)
                        state.lastActivity = now()
                        state.heartbeatDue = false
                        return .messages(batch)
                    }
                    if let closed = state.closed { return .closed(closed) }
                    if state.heartbeatDue {
                        state.heartbeatDue = false
                        state.lastActivity = now()
                        return .heartbeat
                    }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            close(.finished)
        }
    }

    /// Marks a heartbeat due if nothing was written since `idleSince` (monotonic nanoseconds).
    func heartbeatIfIdle(since idleSince: UInt64, now: UInt64) {
        state.withLock { state in
            guard state.closed == nil, state.live, state.lastActivity <= idleSince else { return }
            if let waiter = state.waiter.take() {
                state.lastActivity = now
                waiter.resume(returning: .heartbeat)
            } else {
                state.heartbeatDue = true
            }
        }
    }

    /// Ends the stream: the writer sends what is queued (unless the reason is `.slow`), then stops.
    /// For `.slow` the connection is also closed at once, since its writer may be stuck on a full socket.
    public func close(_ reason: CloseReason) {
        let waiter: CheckedContinuation<Next, Never>? = state.withLock { state in
            guard state.closed == nil else { return nil }
            state.closed = reason
            if reason == .slow { state.pending.removeAll() }
            guard state.pending.isEmpty else { return nil }
            return state.waiter.take()
        }
        waiter?.resume(returning: .closed(reason))
        if reason == .slow { abortConnection() }
    }

    /// Closes the connection underneath: a writer blocked on a full socket then fails and returns.
    /// Never called with a lock held, since closing may run channel handlers inline.
    func abortConnection() {
        abort()
    }

    /// The reason the subscription was closed, if it was.
    public var closeReason: CloseReason? { state.withLock { $0.closed } }

    /// How many messages wait for the writer now.
    public var pendingCount: Int { state.withLock { $0.pending.count } }
}


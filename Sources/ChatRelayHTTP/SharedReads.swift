import ChatRelay
import Synchronization

/// Reads by key that concurrent callers share, and whose costly results are kept a short while:
/// what bounds the work a client can cause by asking again and again (`GET …/presence` of a room
/// of thousands reads its whole hash from Redis).
///
/// A caller gets the result kept for its key if it is younger than `maxAge`; else the read in
/// flight for its key; else it starts one. A read's result is kept only when `read` says so (a
/// cheap one is read afresh every time, so small rooms stay exact) and there is room: at most
/// `capacity` keys, those past `maxAge` swept first. A failed read is not kept, nor shared once
/// it ended. A read is not cancelled with a caller (it is bounded by the broker's own timeout).
final class SharedReads<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    typealias Read = @Sendable () async -> (result: Result<Value, APIError>, keep: Bool)

    private struct Slot {
        var pending: Task<Result<Value, APIError>, Never>?
        var kept: Value?
        /// When `kept` was read (monotonic ns).
        var readAt: UInt64 = 0
    }

    private enum Source {
        case kept(Value)
        case read(Task<Result<Value, APIError>, Never>)
    }

    private let maxAge: UInt64
    private let capacity: Int
    private let slots = Mutex<[Key: Slot]>([:])

    init(maxAge: Duration, capacity: Int) {
        self.maxAge = UInt64(max(0, maxAge.wholeMilliseconds)) * 1_000_000
        self.capacity = capacity
    }

    /// The value for `key`: kept, shared, or read now by `read`.
    func value(for key: Key, read: @escaping Read) async throws(APIError) -> Value {
        let now = MonotonicClock.nanoseconds()
        let source: Source = slots.withLock { slots in
            if let slot = slots[key] {
                if let pending = slot.pending { return .read(pending) }
                if let kept = slot.kept, now &- slot.readAt < maxAge { return .kept(kept) }
            }
            let task = Task { [self] in
                let (result, keep) = await read()
                finish(key, with: result, keep: keep)
                return result
            }
            slots[key, default: Slot()].pending = task
            return .read(task)
        }
        switch source {
        case .kept(let value): return value
        case .read(let task): return try await task.value.get()
        }
    }

    /// How many keys are held (read in flight or kept): for tests.
    var count: Int { slots.withLock { $0.count } }

    private func finish(_ key: Key, with result: Result<Value, APIError>, keep: Bool) {
        let now = MonotonicClock.nanoseconds()
        slots.withLock { slots in
            guard case .success(let value) = result, keep else {
                slots[key] = nil
                return
            }
            // This key is in `slots` already (its read was in flight).
            if slots.count > capacity {
                slots = slots.filter { $0.key == key || $0.value.pending != nil || now &- $0.value.readAt < maxAge }
            }
            guard slots.count <= capacity else {
                slots[key] = nil
                return
            }
            slots[key] = Slot(pending: nil, kept: value, readAt: now)
        }
    }
}

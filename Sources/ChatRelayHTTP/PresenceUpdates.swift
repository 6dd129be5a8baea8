import ChatRelay
import Metrics
import Synchronization

/// This node's presence changes on their way to the broker: added from any thread as streams
/// open and close, taken in batches, in order, by one task (`PresenceService`), so that a burst of
/// arrivals costs a round trip per batch, not per arrival.
///
/// Bounded: past `limit` waiting changes a new one is dropped and counted; a node stores its
/// entries again every hour and whenever it finds its presence mark lost.
final class PresenceUpdates: Sendable {
    let limit: Int
    private let waiting = Mutex<[PresenceEntry]>([])
    private let dropped: Counter
    /// Rung when the first change of a batch is added.
    let doorbell: AsyncStream<Void>
    private let ring: AsyncStream<Void>.Continuation

    init(limit: Int = 65_536, dropped: Counter) {
        self.limit = limit
        self.dropped = dropped
        (doorbell, ring) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Queues `entry` after those waiting.
    func add(_ entry: PresenceEntry) {
        let first = waiting.withLock { waiting -> Bool? in
            guard waiting.count < limit else { return nil }
            waiting.append(entry)
            return waiting.count == 1
        }
        switch first {
        case nil: dropped.increment()
        case true?: ring.yield()
        case false?: break
        }
    }

    /// Every change waiting, in order; of several changes of one entry (`PresenceEntry.field`),
    /// the last (each is the whole state of its entry).
    func take() -> [PresenceEntry] {
        let batch = waiting.withLock { waiting in
            defer { waiting.removeAll(keepingCapacity: true) }
            return waiting
        }
        guard batch.count > 1 else { return batch }
        // Each entry's key once (a burst of arrivals is thousands of them).
        let keys = batch.map { $0.room.value + "\u{1}" + $0.field }
        var last: [String: Int] = [:]
        for (index, key) in keys.enumerated() { last[key] = index }
        return batch.indices.filter { last[keys[$0]] == $0 }.map { batch[$0] }
    }
}

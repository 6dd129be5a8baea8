/// Remembers which message each `Idempotency-Key` stored, per room, for ``window``: its
/// `IdempotencyRecord` (id, time, fingerprint), not the message, so a key costs the same whatever
/// the message's size, and nothing a room's history dropped is kept here.
///
/// Bounded: beyond `maxEntries` the oldest keys are forgotten early (a retry after that is stored
/// again, which is the lesser harm next to unbounded memory).
public struct IdempotencyCache: Sendable {
    /// How long a key is remembered: the spec's 10 minutes.
    public static let window: UInt64 = 10 * 60 * 1000

    private struct Key: Hashable, Sendable {
        var room: RoomName
        var key: String
    }

    private var entries: [Key: (record: IdempotencyRecord, expiresAt: UInt64)] = [:]
    /// Keys in insertion order, so expiry is a walk from the front.
    private var order: [Key] = []
    private var orderStart = 0
    public let maxEntries: Int

    public init(maxEntries: Int = 100_000) {
        self.maxEntries = maxEntries
    }

    public var count: Int { entries.count }

    /// What `key` stored in `room`, if it is still remembered at `now`.
    public mutating func lookup(room: RoomName, key: String, now: UInt64) -> IdempotencyRecord? {
        expire(now: now)
        return entries[Key(room: room, key: key)]?.record
    }

    /// Records that `key` stored `record`'s message in `room` at `now`.
    public mutating func record(room: RoomName, key: String, record: IdempotencyRecord, now: UInt64) {
        let entryKey = Key(room: room, key: key)
        if entries.updateValue((record, now + Self.window), forKey: entryKey) == nil {
            order.append(entryKey)
        }
        while entries.count > maxEntries, orderStart < order.count {
            entries[order[orderStart]] = nil
            orderStart += 1
        }
        compact()
    }

    private mutating func expire(now: UInt64) {
        while orderStart < order.count {
            let key = order[orderStart]
            guard let entry = entries[key] else {
                orderStart += 1
                continue
            }
            guard entry.expiresAt <= now else { break }
            entries[key] = nil
            orderStart += 1
        }
        compact()
    }

    /// Drops the consumed front of `order` once it is half the array, keeping the work amortised O(1).
    private mutating func compact() {
        if orderStart > 1024 && orderStart * 2 > order.count {
            order.removeFirst(orderStart)
            orderStart = 0
        }
    }
}

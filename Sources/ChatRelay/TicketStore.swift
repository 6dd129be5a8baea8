import Synchronization

/// The embedded broker's single-use tickets: values kept for a short time, each taken at most
/// once. Bounded: past `capacity` live tickets a new one is refused (each holds an identity of up
/// to a few KiB, and a client with a token could otherwise make the node hold them without limit).
public final class TicketStore: Sendable {
    private struct Entry {
        let value: [UInt8]
        let expiresAt: UInt64
    }

    private let entries = Mutex([String: Entry]())
    private let capacity: Int
    private let clock: @Sendable () -> UInt64

    /// - Parameters:
    ///   - capacity: the most tickets alive at once.
    ///   - clock: milliseconds; tests pass their own.
    public init(capacity: Int = 100_000, clock: @escaping @Sendable () -> UInt64 = Timestamp.nowMilliseconds) {
        self.capacity = capacity
        self.clock = clock
    }

    /// Keeps `value` under `ticket` for `ttl`.
    /// - Throws: ``BrokerError/unavailable(_:)`` when `capacity` tickets are alive, or the id is taken.
    public func store(_ ticket: String, value: [UInt8], ttl: Duration) throws {
        let now = clock()
        try entries.withLock { entries in
            if entries.count >= capacity {
                // Expired tickets are dropped only when the store is full: lookups drop their own.
                entries = entries.filter { $0.value.expiresAt > now }
                guard entries.count < capacity else {
                    throw BrokerError.unavailable("\(capacity) tickets are waiting to be used")
                }
            }
            guard entries[ticket] == nil else { throw BrokerError.unavailable("a ticket with this id exists") }
            entries[ticket] = Entry(value: value, expiresAt: now + UInt64(max(1, ttl.wholeMilliseconds)))
        }
    }

    /// The value of `ticket`, removed; nil if there is none or it expired.
    public func redeem(_ ticket: String) -> [UInt8]? {
        let now = clock()
        return entries.withLock { entries in
            guard let entry = entries.removeValue(forKey: ticket), entry.expiresAt > now else { return nil }
            return entry.value
        }
    }

    /// Tickets held, expired ones not yet dropped included.
    public var count: Int { entries.withLock { $0.count } }
}

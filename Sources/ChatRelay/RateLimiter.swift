import Synchronization

/// Per-client rate limiting of POSTs: one token bucket per client key (its address).
///
/// Memory stays bounded: full buckets carry no information and are swept away, and beyond
/// `maxClients` the table is swept at once.
public final class RateLimiter: Sendable {
    public let rate: Double
    public let burst: Double
    public let maxClients: Int
    private let buckets = Mutex<[String: TokenBucket]>([:])
    private let lastSweep = Mutex<UInt64>(0)

    /// - Parameters:
    ///   - rate: messages per second per client; 0 disables the limit.
    ///   - burst: how many may come at once.
    public init(rate: Double, burst: Double, maxClients: Int = 100_000) {
        self.rate = rate
        self.burst = max(1, burst)
        self.maxClients = maxClients
    }

    public var isEnabled: Bool { rate > 0 }

    /// Admits one request of `client`, or returns how long it should wait (for `Retry-After`).
    public func admit(_ client: String, now: UInt64 = MonotonicClock.nanoseconds()) -> Duration? {
        guard isEnabled else { return nil }
        let wait = buckets.withLock { buckets in
            if buckets.count >= maxClients { sweep(&buckets, now: now) }
            return buckets[client, default: TokenBucket(rate: rate, burst: burst, now: now)].take(now: now)
        }
        sweepPeriodically(now: now)
        return wait
    }

    /// Clients currently tracked.
    public var trackedClients: Int { buckets.withLock { $0.count } }

    private func sweepPeriodically(now: UInt64) {
        let due = lastSweep.withLock { last in
            guard now &- last > 10_000_000_000 else { return false }
            last = now
            return true
        }
        if due { buckets.withLock { sweep(&$0, now: now) } }
    }

    private func sweep(_ buckets: inout [String: TokenBucket], now: UInt64) {
        buckets = buckets.filter { !$0.value.isFull(now: now) }
        if buckets.count >= maxClients {
            // Every client is active: forget the ones closest to full, which lose the least.
            let keep = buckets.sorted { $0.value.tokens < $1.value.tokens }.prefix(maxClients / 2)
            buckets = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
public struct TokenBucket: Sendable, Equatable {
    public let rate: Double
    public let burst: Double
    public private(set) var tokens: Double
    /// Monotonic nanoseconds of the last refill.
    public private(set) var updatedAt: UInt64

    public init(rate: Double, burst: Double, now: UInt64) {
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updatedAt = now
    }

    /// Takes one token if there is one. Otherwise returns how long until one is available.
    public mutating func take(now: UInt64) -> Duration? {
        refill(now: now)
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        let secondsToWait = (1 - tokens) / rate
        return .nanoseconds(Int64(clamping: (secondsToWait * 1e9).rounded(.up)))
    }

    /// True when the bucket is full again at `now`: it then carries no state worth keeping.
    public func isFull(now: UInt64) -> Bool {
        var copy = self
        copy.refill(now: now)
        return copy.tokens >= burst
    }

    private mutating func refill(now: UInt64) {
        guard now > updatedAt else { return }
        let elapsed = Double(now - updatedAt) / 1e9
        tokens = min(burst, tokens + elapsed * rate)
        updatedAt = now
    }
}

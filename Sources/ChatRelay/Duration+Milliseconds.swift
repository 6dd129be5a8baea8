extension Duration {
    /// The whole milliseconds of this duration (rounded down), as TTLs and millisecond clocks count.
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}

extension Duration {
    /// The whole seconds of this duration, rounded up, at least 1: a `Retry-After`.
    public var wholeSecondsRoundedUp: Int {
        max(1, Int(components.seconds) + (components.attoseconds > 0 ? 1 : 0))
    }
}

extension Duration {
    /// The whole milliseconds of this duration (rounded down), as TTLs and millisecond clocks count.
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}

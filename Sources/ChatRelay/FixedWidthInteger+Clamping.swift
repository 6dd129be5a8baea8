extension FixedWidthInteger {
    /// `value` rounded toward zero and clamped to the type's range, NaN as 0: for a number that
    /// comes from outside (a token's claim, a Redis reply, a flag), on which the plain conversion
    /// `Self(value)` would trap.
    public init(clamping value: Double) {
        if value.isNaN {
            self = 0
        } else if value <= Double(Self.min) {
            self = .min
        } else if value >= Double(Self.max) {
            // Double(Self.max) rounds up to the next power of two for 64-bit types: at or above it
            // is out of range.
            self = .max
        } else {
            self.init(value)
        }
    }
}

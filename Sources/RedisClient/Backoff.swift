/// Capped exponential backoff with jitter: 100 ms, 200 ms, … up to `maximum` (2 s: a restarted Redis
/// is found again within about two seconds), each delay drawn
/// uniformly from its upper half, so nodes that lost Redis together do not reconnect together.
public struct Backoff: Sendable {
    public var initial: Duration = .milliseconds(100)
    public var maximum: Duration = .seconds(2)
    private var current: Duration? = nil

    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(2)) {
        self.initial = initial
        self.maximum = maximum
    }

    public mutating func next() -> Duration {
        let ceiling = current.map { min(maximum, $0 * 2) } ?? initial
        current = ceiling
        return ceiling * Double.random(in: 0.5...1.0)
    }

    public mutating func reset() {
        current = nil
    }
}

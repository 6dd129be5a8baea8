/// Assigns increasing `<ms>-<seq>` ids the way Redis does for a stream: the current millisecond,
/// or the last id's millisecond if the clock went back, with a sequence number within it.
public struct MessageIDGenerator: Sendable {
    public private(set) var last: MessageID = .zero

    public init() {}

    /// The next id, strictly greater than every id returned before.
    public mutating func next(nowMilliseconds: UInt64) -> MessageID {
        let id = nowMilliseconds > last.ms ? MessageID(ms: nowMilliseconds, seq: 0) : last.successor
        last = id
        return id
    }
}

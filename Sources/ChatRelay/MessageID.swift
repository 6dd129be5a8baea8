/// A message id of the form `<ms>-<seq>`: the same shape as a Redis stream id, in both brokers.
///
/// Ids are totally ordered per room: by `ms`, then by `seq`, numerically.
public struct MessageID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Milliseconds since the Unix epoch on the node (or Redis server) that assigned the id.
    public var ms: UInt64
    /// Sequence number within the millisecond.
    public var seq: UInt64

    /// The smallest id; every message id is greater than it.
    public static let zero = MessageID(ms: 0, seq: 0)

    public init(ms: UInt64, seq: UInt64) {
        self.ms = ms
        self.seq = seq
    }

    /// Parses `<ms>-<seq>`, both parts plain decimal (no sign, no spaces), each fitting in 64 bits.
    /// Returns nil for anything else.
    public init?(_ text: some StringProtocol) {
        var ms: UInt64 = 0
        var seq: UInt64 = 0
        var sawDash = false
        var digitsInPart = 0
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                let digit = UInt64(byte &- UInt8(ascii: "0"))
                digitsInPart += 1
                if sawDash {
                    let (m, o1) = seq.multipliedReportingOverflow(by: 10)
                    let (s, o2) = m.addingReportingOverflow(digit)
                    if o1 || o2 { return nil }
                    seq = s
                } else {
                    let (m, o1) = ms.multipliedReportingOverflow(by: 10)
                    let (s, o2) = m.addingReportingOverflow(digit)
                    if o1 || o2 { return nil }
                    ms = s
                }
            case UInt8(ascii: "-") where !sawDash && digitsInPart > 0:
                sawDash = true
                digitsInPart = 0
            default:
                return nil
            }
        }
        guard sawDash, digitsInPart > 0 else { return nil }
        self.ms = ms
        self.seq = seq
    }

    public var description: String { "\(ms)-\(seq)" }

    public static func < (lhs: MessageID, rhs: MessageID) -> Bool {
        lhs.ms != rhs.ms ? lhs.ms < rhs.ms : lhs.seq < rhs.seq
    }

    /// The id that follows this one in the same millisecond.
    public var successor: MessageID {
        seq == .max ? MessageID(ms: ms + 1, seq: 0) : MessageID(ms: ms, seq: seq + 1)
    }
}

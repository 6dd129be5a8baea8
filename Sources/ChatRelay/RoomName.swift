/// A validated room name: `[A-Za-z0-9_-]{1,64}`.
public struct RoomName: Hashable, Sendable, CustomStringConvertible {
    /// The room the seed's paths (`GET /events`, `POST /messages`) use.
    public static let lobby = RoomName(unchecked: "lobby")

    /// The name, exactly as given.
    public let value: String

    /// Returns nil unless `value` matches `[A-Za-z0-9_-]{1,64}`.
    public init?(_ value: some StringProtocol) {
        let utf8 = value.utf8
        guard (1...64).contains(utf8.count), utf8.allSatisfy(Self.isAllowed) else { return nil }
        self.value = String(value)
    }

    private init(unchecked value: String) {
        self.value = value
    }

    public var description: String { value }

    private static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }
}

import Foundation

/// A stream ticket: a random name for an identity, kept by the broker for seconds and taken once,
/// so that a browser's EventSource (which cannot send an `Authorization` header) opens its stream
/// without a long-lived token in its URL.
public enum StreamTicket {
    /// A new ticket: 32 random bytes from the system's CSPRNG, base64url (43 characters).
    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// True if `text` could be a ticket (43 base64url characters): anything else is not looked up.
    public static func isWellFormed(_ text: String) -> Bool {
        text.utf8.count == 43
            && text.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                    UInt8(ascii: "-"), UInt8(ascii: "_"):
                    true
                default: false
                }
            }
    }

    /// The identity as the broker keeps it.
    public static func encode(_ identity: Identity) -> [UInt8] {
        // An Identity always encodes (strings, numbers and arrays only).
        Array((try? JSONEncoder().encode(identity)) ?? Data())
    }

    public static func decode(_ bytes: [UInt8]) -> Identity? {
        try? JSONDecoder().decode(Identity.self, from: Data(bytes))
    }
}

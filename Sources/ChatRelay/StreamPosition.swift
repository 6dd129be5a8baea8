/// Where a stream of several rooms stands: the id of the last message it sent in each room, in
/// the order the stream lists its rooms. It is the stream's SSE `id:`, so a client that reconnects
/// with it as `Last-Event-ID` resumes every room exactly where it was, on any node.
///
/// The text form (docs/API.md, "One stream, many rooms") is `~` and the unpadded base64url of:
/// - a format byte, `1`;
/// - 4 bytes, big-endian: the FNV-1a hash of the stream's room names, each followed by a
///   newline, so that a position is never read against another list of rooms;
/// - varints (LEB128): the number of rooms, then the newest `ms` of all positions (the base);
/// - per room: `0` for the very beginning (`0-0`), else `base - ms + 1` and then `seq`.
///
/// Rooms that moved recently differ little from the base, so most take 3 or 4 bytes: 3 rooms
/// come to about 26 characters, 100 to about 600. The text is at most ``maximumLength``.
public struct StreamPosition: Equatable, Sendable {
    /// Each room's last id, in the stream's order; `.zero` when it had nothing yet.
    public var ids: [MessageID]

    /// The longest text a position of ``maximumRooms`` rooms can take.
    public static let maximumLength = 3000
    /// The most rooms a position names: the bound every stream's room limit must stay within.
    public static let maximumRooms = 100

    public init(ids: [MessageID]) {
        self.ids = ids
    }

    /// Why a text is not a position of the given rooms.
    public enum ParseError: Error, Equatable, CustomStringConvertible {
        /// Not the encoding above (bad characters, truncated, trailing bytes, numbers out of range).
        case malformed
        /// A position of a different list of rooms (or of the same rooms in another order).
        case otherRooms

        public var description: String {
            switch self {
            case .malformed: "is not a stream position this node issued"
            case .otherRooms: "was issued for a different list of rooms"
            }
        }
    }

    /// Whether `text` has the shape of a position rather than a single message id.
    public static func isPosition(_ text: some StringProtocol) -> Bool {
        text.utf8.first == UInt8(ascii: "~")
    }

    /// Reads `text` as the position of a stream of `rooms`.
    public init(parsing text: some StringProtocol, rooms: [RoomName]) throws(ParseError) {
        let utf8 = text.utf8
        guard utf8.count <= Self.maximumLength, utf8.first == UInt8(ascii: "~"),
            let bytes = Base64URL.decode(utf8.dropFirst())
        else { throw .malformed }
        var reader = ByteReader(bytes: bytes)
        guard reader.byte() == 1, let check = reader.uint32() else { throw .malformed }
        guard check == Self.check(rooms) else { throw .otherRooms }
        guard let count = reader.varint(), count == UInt64(rooms.count), let base = reader.varint() else { throw .malformed }
        var ids: [MessageID] = []
        ids.reserveCapacity(rooms.count)
        for _ in rooms {
            guard let distance = reader.varint() else { throw .malformed }
            if distance == 0 {
                ids.append(.zero)
                continue
            }
            guard distance - 1 <= base, let seq = reader.varint() else { throw .malformed }
            ids.append(MessageID(ms: base - (distance - 1), seq: seq))
        }
        guard reader.atEnd else { throw .malformed }
        self.ids = ids
    }

    /// The text form, for the rooms `rooms` (the same list, in the same order, as `ids`).
    public func text(rooms: [RoomName]) -> String {
        var binary: [UInt8] = []
        var text: [UInt8] = []
        appendText(to: &text, check: Self.check(rooms), binary: &binary)
        return String(decoding: text, as: UTF8.self)
    }

    /// Appends the text form to `text`, with the rooms' `check`; `binary` is scratch space (its
    /// contents are replaced), so that a caller writing one position per event allocates nothing.
    func appendText(to text: inout [UInt8], check: UInt32, binary: inout [UInt8]) {
        binary.removeAll(keepingCapacity: true)
        append(to: &binary, check: check)
        text.append(UInt8(ascii: "~"))
        Base64URL.append(binary, to: &text)
    }

    /// Appends the binary form to `bytes`, with the rooms' `check` (see ``check(_:)``).
    func append(to bytes: inout [UInt8], check: UInt32) {
        bytes.append(1)
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: check >> UInt32(shift))) }
        Self.appendVarint(UInt64(ids.count), to: &bytes)
        let base = ids.lazy.map(\.ms).max() ?? 0
        Self.appendVarint(base, to: &bytes)
        for id in ids {
            if id == .zero {
                bytes.append(0)
            } else {
                Self.appendVarint(base - id.ms + 1, to: &bytes)
                Self.appendVarint(id.seq, to: &bytes)
            }
        }
    }

    /// The FNV-1a hash of the room names, each followed by a newline.
    public static func check(_ rooms: [RoomName]) -> UInt32 {
        var hash: UInt32 = 0x811c_9dc5
        for room in rooms {
            for byte in room.value.utf8 {
                hash = (hash ^ UInt32(byte)) &* 0x0100_0193
            }
            hash = (hash ^ 0x0A) &* 0x0100_0193
        }
        return hash
    }

    static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    /// Reads the binary form front to back.
    private struct ByteReader {
        let bytes: [UInt8]
        var index = 0

        var atEnd: Bool { index == bytes.count }

        mutating func byte() -> UInt8? {
            guard index < bytes.count else { return nil }
            defer { index += 1 }
            return bytes[index]
        }

        mutating func uint32() -> UInt32? {
            var value: UInt32 = 0
            for _ in 0..<4 {
                guard let byte = byte() else { return nil }
                value = value << 8 | UInt32(byte)
            }
            return value
        }

        /// A LEB128 varint of at most 64 bits, in its shortest form.
        mutating func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while let byte = byte() {
                let bits = UInt64(byte & 0x7F)
                guard shift < 64, shift < 63 || bits <= 1 else { return nil }
                value |= bits << shift
                if byte & 0x80 == 0 {
                    // A longer encoding of the same number (a trailing zero group) is refused, so
                    // each position has one text.
                    if byte == 0, shift > 0 { return nil }
                    return value
                }
                shift += 7
            }
            return nil
        }
    }
}

/// Base64url without padding (RFC 4648, section 5).
enum Base64URL {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        append(bytes, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the encoding of `bytes` to `out`.
    static func append(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.reserveCapacity(out.count + (bytes.count * 4 + 2) / 3)
        var index = 0
        while index < bytes.count {
            let b0 = UInt32(bytes[index])
            let b1 = index + 1 < bytes.count ? UInt32(bytes[index + 1]) : 0
            let b2 = index + 2 < bytes.count ? UInt32(bytes[index + 2]) : 0
            let group = b0 << 16 | b1 << 8 | b2
            let characters = min(4, (bytes.count - index) + 1)
            for position in 0..<characters {
                out.append(alphabet[Int(group >> UInt32(18 - 6 * position) & 0x3F)])
            }
            index += 3
        }
    }

    /// The bytes of `text`, or nil when it has a character outside the alphabet, a length no
    /// encoding has, or bits set past the last byte.
    static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        guard text.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count * 3 / 4)
        var group: UInt32 = 0
        var bits = 0
        for character in text {
            guard let value = sextet(character) else { return nil }
            group = group << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: group >> UInt32(bits)))
                group &= (1 << UInt32(bits)) - 1
            }
        }
        guard group == 0 else { return nil }
        return out
    }

    private static func sextet(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): character - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): character - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0") + 52
        case UInt8(ascii: "-"): 62
        case UInt8(ascii: "_"): 63
        default: nil
        }
    }
}

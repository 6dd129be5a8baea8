import NIOCore

extension MessageBodyDecoder {
    /// The `user` and `text` of a JSON object whose every value is a string (the shape nearly every
    /// publish body has), read on the body's bytes; nil for anything else (another value type, a
    /// repeated field, a broken escape, not an object), which `JSONDecoder` then reads and, where
    /// it is wrong, says why. The body is valid UTF-8 (checked before).
    ///
    /// Why: a `JSONDecoder`, the `Data` it reads from and its keyed container were about a tenth
    /// of a POST's CPU, for two strings.
    package static func flatStringFields(_ bytes: ByteBufferView) -> (user: String?, text: String?)? {
        bytes.withContiguousStorageIfAvailable { buffer in
            var reader = FlatJSONObjectReader(bytes: buffer)
            return reader.userAndText()
        } ?? nil
    }
}

/// Reads a flat JSON object of string values from UTF-8 bytes (RFC 8259's grammar for the parts
/// it accepts); every method returns nil where the input leaves that shape.
private struct FlatJSONObjectReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    private static let quote = UInt8(ascii: "\"")
    private static let backslash = UInt8(ascii: "\\")

    mutating func userAndText() -> (user: String?, text: String?)? {
        guard next() == UInt8(ascii: "{") else { return nil }
        var user: String?
        var text: String?
        if peek() == UInt8(ascii: "}") {
            index += 1
        } else {
            while true {
                guard peek() == Self.quote, let key = string(), next() == UInt8(ascii: ":"), peek() == Self.quote,
                    let value = string()
                else { return nil }
                switch key {
                case "user":
                    guard user == nil else { return nil }  // repeated: left to JSONDecoder
                    user = value
                case "text":
                    guard text == nil else { return nil }
                    text = value
                default:
                    break
                }
                switch next() {
                case UInt8(ascii: ","): continue
                case UInt8(ascii: "}"): break
                default: return nil
                }
                break
            }
        }
        // Only white space after the object.
        guard peek() == nil else { return nil }
        return (user, text)
    }

    /// The next byte that is not white space, consumed.
    private mutating func next() -> UInt8? {
        guard let byte = peek() else { return nil }
        index += 1
        return byte
    }

    /// The next byte that is not white space, not consumed.
    private mutating func peek() -> UInt8? {
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): index += 1
            default: return bytes[index]
            }
        }
        return nil
    }

    /// The string starting at `index` (its opening quote), unescaped.
    private mutating func string() -> String? {
        index += 1
        let start = index
        var escaped = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte == Self.quote { break }
            if byte < 0x20 { return nil }  // control characters must be escaped
            if byte == Self.backslash {
                escaped = true
                index += 1
            }
            index += 1
        }
        guard index < bytes.count else { return nil }
        let raw = UnsafeBufferPointer(rebasing: bytes[start..<index])
        index += 1
        return escaped ? Self.unescaped(raw) : String(decoding: raw, as: UTF8.self)
    }

    /// `raw` (a string's bytes between its quotes) with its escapes replaced.
    private static func unescaped(_ raw: UnsafeBufferPointer<UInt8>) -> String? {
        var result: [UInt8] = []
        result.reserveCapacity(raw.count)
        var index = 0
        while index < raw.count {
            let byte = raw[index]
            index += 1
            guard byte == backslash else {
                result.append(byte)
                continue
            }
            guard index < raw.count else { return nil }
            let escape = raw[index]
            index += 1
            switch escape {
            case quote, backslash, UInt8(ascii: "/"): result.append(escape)
            case UInt8(ascii: "b"): result.append(0x08)
            case UInt8(ascii: "f"): result.append(0x0C)
            case UInt8(ascii: "n"): result.append(0x0A)
            case UInt8(ascii: "r"): result.append(0x0D)
            case UInt8(ascii: "t"): result.append(0x09)
            case UInt8(ascii: "u"):
                guard let unit = hex4(raw, at: index) else { return nil }
                index += 4
                var scalarValue = UInt32(unit)
                if (0xD800...0xDBFF).contains(unit) {
                    // A high surrogate: its low half must follow as another \u escape.
                    guard index + 1 < raw.count, raw[index] == backslash, raw[index + 1] == UInt8(ascii: "u"),
                        let low = hex4(raw, at: index + 2), (0xDC00...0xDFFF).contains(low)
                    else { return nil }
                    index += 6
                    scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(scalarValue) else { return nil }  // a lone low surrogate
                result.append(contentsOf: UTF8.encode(scalar)!)
            default:
                return nil
            }
        }
        return String(decoding: result, as: UTF8.self)
    }

    /// Four hexadecimal digits at `index`, as a number.
    private static func hex4(_ raw: UnsafeBufferPointer<UInt8>, at index: Int) -> UInt16? {
        guard index + 4 <= raw.count else { return nil }
        var value: UInt16 = 0
        for byte in raw[index..<index + 4] {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt16(digit)
        }
        return value
    }
}

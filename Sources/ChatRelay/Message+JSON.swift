import NIOCore

extension Message {
    /// Writes the message as one line of JSON, in the spec's field order:
    /// `{"id":"…","room":"…","user":"…","text":"…","time":"2026-11-24T15:00:00.000Z"}`, with
    /// `"name":"…"` after `user` when the message has a display name.
    ///
    /// Hand-written rather than `JSONEncoder`: it runs once per message on the publish path, and
    /// the escaping must guarantee a single line (no raw CR, LF, U+2028 or U+2029) whatever the text.
    public func writeJSON(into buffer: inout ByteBuffer) {
        buffer.writeString(Self.jsonBeforeID)
        buffer.writeString(id.description)
        Self.writeJSONTail(room: room, user: user, name: name, text: text, timeMs: timeMs, into: &buffer)
    }

    /// What a message's JSON holds before its id. The one place it is spelled: the Redis publish
    /// script, which learns the id from `XADD`, takes it as an argument.
    public static let jsonBeforeID = "{\"id\":\""

    /// A message's JSON from its id and the tail after it (`writeJSONTail`), as a Redis stream
    /// entry stores it.
    public static func json(id: String, tail: some Collection<UInt8>) -> ByteBuffer {
        var json = ByteBuffer()
        json.reserveCapacity(tail.count + 32)
        json.writeString(jsonBeforeID)
        json.writeString(id)
        json.writeBytes(tail)
        return json
    }

    /// Everything of the JSON after the id: `","room":"…","user":…,"text":…,"time":"…"}` (and
    /// `"name":…` after `user` when there is one).
    ///
    /// The Redis broker stores this tail and lets Redis put the id it assigns in front of it
    /// (`{"id":"` + id + tail), so a message is encoded once, on the node that accepted it.
    public static func writeJSONTail(
        room: RoomName, user: String, name: String? = nil, text: String, timeMs: UInt64, into buffer: inout ByteBuffer
    ) {
        buffer.writeStaticString("\",\"room\":\"")
        buffer.writeString(room.value)
        buffer.writeStaticString("\",\"user\":")
        JSONString.write(user, into: &buffer)
        if let name {
            buffer.writeStaticString(",\"name\":")
            JSONString.write(name, into: &buffer)
        }
        buffer.writeStaticString(",\"text\":")
        JSONString.write(text, into: &buffer)
        buffer.writeStaticString(",\"time\":\"")
        Timestamp.writeRFC3339(milliseconds: timeMs, into: &buffer)
        buffer.writeStaticString("\"}")
    }

    /// The length of a message's JSON: its fixed parts (the field names, the id, the room, the
    /// time's 24 characters) and its strings as they are escaped.
    static func jsonLength(id: MessageID, room: RoomName, user: String, name: String?, text: String) -> Int {
        // {"id":"","room":"","user":,"text":,"time":""} is 45 bytes; ,"name": is 8 more.
        45 + id.description.utf8.count + room.value.utf8.count + 24 + JSONString.encodedLength(user)
            + (name.map { 8 + JSONString.encodedLength($0) } ?? 0) + JSONString.encodedLength(text)
    }

    /// The message as one line of JSON.
    public func json(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: Self.jsonLength(id: id, room: room, user: user, name: name, text: text))
        writeJSON(into: &buffer)
        return buffer
    }
}

/// JSON string literals, escaped so the result is always one line of ASCII-safe JSON.
public enum JSONString {
    /// Writes `string` as a quoted JSON string: `"` and `\` escaped, control characters as `\n`, `\t`
    /// or `\u00XX`, U+2028 / U+2029 as `\u2028` / `\u2029` so no parser sees a line break, and U+FEFF
    /// as `\ufeff` so no decoder mistakes it for a byte-order mark.
    public static func write(_ string: String, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "\""))
        var string = string
        // Native Swift strings are contiguous UTF-8 already; this copies only bridged ones.
        string.withUTF8 { writeEscaped($0, into: &buffer) }
        buffer.writeInteger(UInt8(ascii: "\""))
    }

    /// The bytes `write(_:into:)` writes for `string`, quotes included: a buffer made for a
    /// message is made this size, not twice its text (which a stored message then kept).
    public static func encodedLength(_ string: String) -> Int {
        var length = 2
        var string = string
        string.withUTF8 { bytes in
            length += bytes.count
            var index = 0
            let count = bytes.count
            while index < count {
                switch bytes[index] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"):
                    length += 1
                case 0xE2 where index + 2 < count && bytes[index + 1] == 0x80 && (bytes[index + 2] == 0xA8 || bytes[index + 2] == 0xA9):
                    length += 3
                    index += 2
                case 0xEF where index + 2 < count && bytes[index + 1] == 0xBB && bytes[index + 2] == 0xBF:
                    length += 3
                    index += 2
                case 0..<0x20, 0x7F:
                    length += 5
                default:
                    break
                }
                index += 1
            }
        }
        return length
    }

    private static func writeEscaped(_ bytes: UnsafeBufferPointer<UInt8>, into buffer: inout ByteBuffer) {
        var runStart = 0
        var index = 0
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            var escape: StaticString? = nil
            var skip = 1
            switch byte {
            case UInt8(ascii: "\""): escape = "\\\""
            case UInt8(ascii: "\\"): escape = "\\\\"
            case UInt8(ascii: "\n"): escape = "\\n"
            case UInt8(ascii: "\r"): escape = "\\r"
            case UInt8(ascii: "\t"): escape = "\\t"
            case 0xE2 where index + 2 < count && bytes[index + 1] == 0x80 && (bytes[index + 2] == 0xA8 || bytes[index + 2] == 0xA9):
                escape = bytes[index + 2] == 0xA8 ? "\\u2028" : "\\u2029"
                skip = 3
            case 0xEF where index + 2 < count && bytes[index + 1] == 0xBB && bytes[index + 2] == 0xBF:
                // U+FEFF: some decoders drop it as a byte-order mark, so it travels escaped.
                escape = "\\ufeff"
                skip = 3
            case 0..<0x20, 0x7F:
                buffer.writeBytes(UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                buffer.writeStaticString("\\u00")
                buffer.writeInteger(hexDigit(byte >> 4))
                buffer.writeInteger(hexDigit(byte & 0x0F))
                index += 1
                runStart = index
                continue
            default:
                break
            }
            if let escape {
                buffer.writeBytes(UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                buffer.writeStaticString(escape)
                index += skip
                runStart = index
            } else {
                index += 1
            }
        }
        buffer.writeBytes(UnsafeBufferPointer(rebasing: bytes[runStart..<count]))
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
    }
}

import ChatRelay
import Foundation
import NIOCore
import RedisClient

/// Reads `user` and `text` from a POST body, JSON or form-encoded.
public enum MessageBodyDecoder {
    /// The body's media type, as the publish route accepts it.
    public enum MediaType: Equatable, Sendable {
        case json
        case form

        /// Parses a `Content-Type` value: the media type before any parameters, case-insensitive.
        /// `charset`, if given, must be UTF-8. Returns nil for any other type. On the value's bytes,
        /// ASCII only (as media types are): every POST goes through here.
        public init?(contentType: String?) {
            guard let contentType else { return nil }
            var parts = contentType.utf8.split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: false)[...]
            guard let first = parts.popFirst() else { return nil }
            let type = Self.trimmed(first)
            if Self.equalsIgnoringCase(type, "application/json") {
                self = .json
            } else if Self.equalsIgnoringCase(type, "application/x-www-form-urlencoded") {
                self = .form
            } else {
                return nil
            }
            let charsetName = Array("charset=".utf8)
            for part in parts {
                let parameter = Self.trimmed(part)
                guard parameter.count >= charsetName.count,
                    Self.equalsIgnoringCase(parameter.prefix(charsetName.count), "charset=")
                else { continue }
                var value = parameter.dropFirst(charsetName.count)
                if value.first == UInt8(ascii: "\""), value.last == UInt8(ascii: "\""), value.count >= 2 {
                    value = value.dropFirst().dropLast()
                }
                guard Self.equalsIgnoringCase(value, "utf-8") || Self.equalsIgnoringCase(value, "utf8") else { return nil }
            }
        }

        /// `bytes` without leading and trailing spaces and tabs.
        private static func trimmed(_ bytes: Substring.UTF8View) -> Substring.UTF8View {
            let blank: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
            guard let start = bytes.firstIndex(where: { !blank($0) }), let end = bytes.lastIndex(where: { !blank($0) }) else {
                return bytes[bytes.startIndex..<bytes.startIndex]
            }
            return bytes[start...end]
        }

        /// Whether `bytes` spell `lowercase` (ASCII, lowercase) in any case.
        private static func equalsIgnoringCase(_ bytes: Substring.UTF8View, _ lowercase: StaticString) -> Bool {
            guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
            return lowercase.withUTF8Buffer { expected in
                zip(bytes, expected).allSatisfy { byte, wanted in
                    (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 == wanted : byte == wanted
                }
            }
        }
    }

    /// The fields of a publish body. A missing field is an empty string (refused by validation).
    /// - Throws: `APIError` `invalid_body` (not JSON / not a form / not UTF-8) or `invalid_field`
    ///   (a field that is not a string).
    public static func decode(_ body: ByteBuffer, as mediaType: MediaType) throws(APIError) -> (user: String, text: String) {
        let bytes = body.readableBytesView
        switch mediaType {
        case .json: return try decodeJSON(bytes)
        case .form: return try decodeForm(bytes)
        }
    }

    private static func decodeJSON(_ bytes: ByteBufferView) throws(APIError) -> (user: String, text: String) {
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw APIError.invalidBody("The body is not valid UTF-8.")
        }
        if let fields = flatStringFields(bytes) { return (fields.user ?? "", fields.text ?? "") }
        // Any other shape: JSONDecoder, not JSONSerialization (no dictionary of `Any` to build
        // and cast back), which also says what is wrong.
        do {
            let fields = try JSONDecoder().decode(PublishBody.self, from: Data(bytes))
            return (fields.user ?? "", fields.text ?? "")
        } catch DecodingError.typeMismatch(_, let context) where !context.codingPath.isEmpty {
            throw APIError.invalidField("\(context.codingPath[0].stringValue): must be a string")
        } catch DecodingError.typeMismatch {
            throw APIError.invalidBody("The body must be a JSON object: {\"user\": \"…\", \"text\": \"…\"}.")
        } catch {
            throw APIError.invalidBody("The body is not valid JSON.")
        }
    }

    /// The fields of a JSON publish body; others are ignored, a missing one is nil.
    private struct PublishBody: Decodable {
        let user: String?
        let text: String?
    }

    private static func decodeForm(_ bytes: ByteBufferView) throws(APIError) -> (user: String, text: String) {
        var user = ""
        var text = ""
        for pair in bytes.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            let name = try percentDecoded(parts[0])
            let value = parts.count > 1 ? try percentDecoded(parts[1]) : ""
            switch name {
            case "user": user = value
            case "text": text = value
            default: break
            }
        }
        return (user, text)
    }

    /// `+` as space and `%XX` as a byte; the result must be UTF-8.
    static func percentDecoded(_ encoded: some Collection<UInt8>) throws(APIError) -> String {
        guard let bytes = PercentDecoding.bytes(encoded, plusAsSpace: true) else {
            throw APIError.invalidBody("The form body has a broken %-escape.")
        }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw APIError.invalidBody("The form body is not valid UTF-8.")
        }
        return string
    }
}

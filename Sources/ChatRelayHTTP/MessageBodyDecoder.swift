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
        /// `charset`, if given, must be UTF-8. Returns nil for any other type.
        public init?(contentType: String?) {
            guard let contentType else { return nil }
            let parts = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            switch parts.first {
            case "application/json": self = .json
            case "application/x-www-form-urlencoded": self = .form
            default: return nil
            }
            for parameter in parts.dropFirst() where parameter.hasPrefix("charset=") {
                let charset = parameter.dropFirst("charset=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                guard charset == "utf-8" || charset == "utf8" else { return nil }
            }
        }
    }

    /// The fields of a publish body. A missing field is an empty string (refused by validation).
    /// - Throws: `APIError` `invalid_body` (not JSON / not a form / not UTF-8) or `invalid_field`
    ///   (a field that is not a string).
    public static func decode(_ body: ByteBuffer, as mediaType: MediaType) throws -> (user: String, text: String) {
        let bytes = body.readableBytesView
        switch mediaType {
        case .json: return try decodeJSON(bytes)
        case .form: return try decodeForm(bytes)
        }
    }

    private static func decodeJSON(_ bytes: ByteBufferView) throws -> (user: String, text: String) {
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw APIError.invalidBody("The body is not valid UTF-8.")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes))
        } catch {
            throw APIError.invalidBody("The body is not valid JSON.")
        }
        guard let fields = object as? [String: Any] else {
            throw APIError.invalidBody("The body must be a JSON object: {\"user\": \"…\", \"text\": \"…\"}.")
        }
        func string(_ name: String) throws -> String {
            guard let value = fields[name] else { return "" }
            guard let text = value as? String else {
                throw APIError.invalidField("\(name): must be a string")
            }
            return text
        }
        return (try string("user"), try string("text"))
    }

    private static func decodeForm(_ bytes: ByteBufferView) throws -> (user: String, text: String) {
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
    static func percentDecoded(_ encoded: some Collection<UInt8>) throws -> String {
        guard let bytes = PercentDecoding.bytes(encoded, plusAsSpace: true) else {
            throw APIError.invalidBody("The form body has a broken %-escape.")
        }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw APIError.invalidBody("The form body is not valid UTF-8.")
        }
        return string
    }
}

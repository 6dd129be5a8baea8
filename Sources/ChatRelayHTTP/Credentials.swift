import Foundation
import NIOHTTP1
import RelayAccess

/// What a request presents to say who it is, read once from its head: a bearer token
/// (`Authorization`), the session cookie, or a stream ticket (`?ticket=`), in that order.
struct Credentials: Sendable {
    enum Presented: Sendable {
        case none
        case bearer(String)
        case cookie(String)
        case ticket(String)
        /// An `Authorization` header that is not `Bearer <token>`.
        case unreadable
    }

    let presented: Presented
    /// The request's `Origin`, for the cookie's cross-site check.
    let origin: String?
    /// The request's `Host`: a page served by the node itself posts from its own origin.
    let host: String?
    /// The request came over TLS (a trusted proxy's `X-Forwarded-Proto: https`): the session
    /// cookie is set `Secure`.
    let overTLS: Bool
    /// The request's client (`RelayNode.clientKey`): a refusal takes from its request bucket.
    let client: String

    /// Reads the credentials of `head`. `ticket` is the query's ticket, taken only where a
    /// stream is opened.
    init(head: HTTPRequestHead, ticket: String?, cookieName: String, overTLS: Bool, client: String = "") {
        let headers = head.headers
        self.client = client
        origin = headers.first(name: "origin")
        host = headers.first(name: "host")
        self.overTLS = overTLS
        if let authorization = headers.first(name: "authorization") {
            presented = Self.bearer(authorization).map(Presented.bearer) ?? .unreadable
        } else if let token = Self.cookie(named: cookieName, in: headers[canonicalForm: "cookie"]) {
            presented = .cookie(token)
        } else if let ticket {
            presented = .ticket(ticket)
        } else {
            presented = .none
        }
    }

    /// The token of `Bearer <token>` (the scheme in any case, RFC 9110 §11.1). On the header's
    /// UTF-8 bytes: it runs for every request with a token.
    static func bearer(_ value: String) -> String? {
        let bytes = value.utf8
        guard let space = bytes.firstIndex(of: UInt8(ascii: " ")) else { return nil }
        let scheme = bytes[..<space]
        // ASCII letters compared without case (| 0x20 lowercases a letter).
        guard scheme.count == 6, zip(scheme, "bearer".utf8).allSatisfy({ $0 | 0x20 == $1 }) else { return nil }
        var token = bytes[bytes.index(after: space)...]
        while let first = token.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") { token = token.dropFirst() }
        while let last = token.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { token = token.dropLast() }
        return token.isEmpty ? nil : String(Substring(token))
    }

    /// The value of cookie `name` in the `Cookie` header lines (`a=1; b=2`).
    static func cookie(named name: String, in lines: [Substring]) -> String? {
        for line in lines {
            for pair in line.split(separator: ";") {
                let trimmed = pair.drop { $0 == " " }
                guard let equals = trimmed.firstIndex(of: "="), trimmed[..<equals] == name else { continue }
                var value = trimmed[trimmed.index(after: equals)...]
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = value.dropFirst().dropLast() }
                return value.isEmpty ? nil : String(value)
            }
        }
        return nil
    }

    /// True if the request's `Origin` may act for a cookie's holder: an origin `--allow-origin`
    /// names (not `*`), or the node's own (the `Host` the request was sent to).
    func originMayUseCookie(cors: CORSPolicy?) -> Bool {
        guard let origin else { return false }
        if let cors, cors.allowOrigins.contains(origin) { return true }
        guard let host else { return false }
        return origin == "http://" + host || origin == "https://" + host
    }
}

import ChatRelay
import NIOCore
import NIOHTTP1

/// An error response of the spec: `{"error": "<code>", "message": "<for a person>"}` with its status,
/// and `Retry-After` where the client should come back later.
public struct APIError: Error, Sendable {
    public var status: HTTPResponseStatus
    public var code: String
    public var message: String
    /// Seconds for `Retry-After`, if any.
    public var retryAfter: Int?
    /// The methods a path takes, for `Allow` (a `405`).
    public var allow: String?
    /// The challenge of a `401`, for `WWW-Authenticate`.
    public var authenticate: String?

    public init(_ status: HTTPResponseStatus, code: String, message: String, retryAfter: Int? = nil, allow: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
        self.allow = allow
    }

    /// The headers an error answer carries besides the common ones, whichever path writes it.
    var extraHeaders: [(String, String)] {
        var headers: [(String, String)] = []
        if let retryAfter { headers.append(("Retry-After", String(retryAfter))) }
        if let allow { headers.append(("Allow", allow)) }
        if let authenticate { headers.append(("WWW-Authenticate", authenticate)) }
        return headers
    }

    /// The JSON body: `{"error": "<code>", "message": "…"}`.
    var body: ByteBuffer {
        var body = ByteBuffer()
        body.writeStaticString("{\"error\":")
        JSONString.write(code, into: &body)
        body.writeStaticString(",\"message\":")
        JSONString.write(message, into: &body)
        body.writeStaticString("}")
        return body
    }

    static let contentType = "application/json; charset=utf-8"
}

extension APIError {
    static func invalidBody(_ message: String) -> APIError {
        APIError(.badRequest, code: "invalid_body", message: message)
    }

    static func invalidField(_ message: String) -> APIError {
        APIError(.badRequest, code: "invalid_field", message: message)
    }

    static func invalidRoom(_ name: String) -> APIError {
        APIError(
            .badRequest, code: "invalid_room",
            message: "A room name is 1 to 64 letters, digits, '_' or '-'; got \(name.debugDescription.prefix(80)).")
    }

    static func tooLarge(limit: Int) -> APIError {
        APIError(.payloadTooLarge, code: "too_large", message: "The request body is over this node's limit of \(limit) bytes.")
    }

    static let unsupportedMediaType = APIError(
        .unsupportedMediaType, code: "unsupported_media_type",
        message: "Send the message as application/json or application/x-www-form-urlencoded.")

    static func rateLimited(retryAfter: Int) -> APIError {
        APIError(
            .tooManyRequests, code: "rate_limited", message: "Too many messages from this client; retry in \(retryAfter) s.",
            retryAfter: retryAfter)
    }

    /// `422`: the `Idempotency-Key` stored another message (of this poster, in this room).
    static let idempotencyKeyReused = APIError(
        .unprocessableEntity, code: "idempotency_key_reused",
        message: "This Idempotency-Key was used for another message within 10 minutes; use a new key for a new message.")

    /// `429` at one of a client's own bounds (`ClientLimits`): what it holds or asks of the node.
    static func clientLimit(_ code: String, _ message: String, retryAfter: Int = 5) -> APIError {
        APIError(.tooManyRequests, code: code, message: message, retryAfter: retryAfter)
    }

    static func unavailable(_ message: String, retryAfter: Int = 1) -> APIError {
        APIError(.serviceUnavailable, code: "unavailable", message: message, retryAfter: retryAfter)
    }

    static let draining = APIError.unavailable("This node is draining; connect to another node.", retryAfter: 1)

    static func methodNotAllowed(_ method: String, allow: String) -> APIError {
        APIError(
            .methodNotAllowed, code: "method_not_allowed", message: "This path takes \(allow), not \(method.prefix(20)).", allow: allow)
    }

    /// `401 unauthorized`: no credentials where they are needed (`WWW-Authenticate: Bearer`, RFC
    /// 6750 §3.1: no error code), or credentials that are not good (`error="invalid_token"`).
    static func unauthorized(_ message: String, invalidToken: Bool) -> APIError {
        var error = APIError(.unauthorized, code: "unauthorized", message: message)
        error.authenticate = invalidToken ? "Bearer realm=\"chat-relay\", error=\"invalid_token\"" : "Bearer realm=\"chat-relay\""
        return error
    }

    /// `403 forbidden`: good credentials, but no grant for this room and action (or a cookie sent
    /// from an origin that may not use it).
    static func forbidden(_ message: String) -> APIError {
        APIError(.forbidden, code: "forbidden", message: message)
    }

    /// A request NIO's HTTP parser could not read.
    static let badRequest = APIError(.badRequest, code: "bad_request", message: "The request is not HTTP/1 this node can read.")
}

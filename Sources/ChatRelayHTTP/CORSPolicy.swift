/// CORS for the origins given with `--allow-origin` (or `*`): the headers a browser on such an
/// origin needs, on every answer, and the answer to its preflight. Without `--allow-origin` the
/// node has none and sends no CORS header at all.
struct CORSPolicy: Sendable {
    let allowOrigins: Set<String>
    let allowAny: Bool

    init(allowOrigins: [String]) {
        self.allowOrigins = Set(allowOrigins)
        self.allowAny = allowOrigins.contains("*")
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, or nil if it is not allowed.
    func allowedOrigin(_ origin: String) -> String? {
        if allowAny { return "*" }
        return allowOrigins.contains(origin) ? origin : nil
    }

    /// The CORS headers of an answer (not a preflight's) to a request from `origin`; none if the
    /// origin is not allowed.
    func responseHeaders(origin: String) -> [(String, String)] {
        guard let allowed = allowedOrigin(origin) else { return [] }
        var headers = [("Access-Control-Allow-Origin", allowed), ("Access-Control-Expose-Headers", "X-Relay-Node, Retry-After")]
        if !allowAny { headers.append(("Vary", "Origin")) }
        return headers
    }

    /// The headers of a preflight's answer (`OPTIONS` with `Access-Control-Request-Method`) from
    /// `origin`; none if the origin is not allowed.
    func preflightHeaders(origin: String) -> [(String, String)] {
        guard let allowed = allowedOrigin(origin) else { return [] }
        var headers = [
            ("Access-Control-Allow-Origin", allowed),
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", "Content-Type, Last-Event-ID, Idempotency-Key, Cache-Control"),
            ("Access-Control-Max-Age", "600"),
        ]
        if !allowAny { headers.append(("Vary", "Origin")) }
        return headers
    }
}

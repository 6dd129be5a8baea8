/// CORS for the origins given with `--allow-origin` (or `*`): the headers a browser on such an
/// origin needs, on every answer, and the answer to its preflight. Without `--allow-origin` the
/// node has none and sends no CORS header at all.
///
/// Every answer of a node with a policy says `Vary: Origin` (`RelayNode.responseHead`), whatever
/// the request's origin: the CORS headers differ by it, so a cache must never serve one origin's
/// answer (or the answer to no origin) to another.
///
/// With `--auth jwt`, an origin named in `--allow-origin` may also send credentials (the session
/// cookie: `Access-Control-Allow-Credentials`) and the `Authorization` header; `*` allows the
/// header but never cookies, as browsers require.
struct CORSPolicy: Sendable {
    let allowOrigins: Set<String>
    let allowAny: Bool
    /// Requests may carry credentials (`--auth jwt`).
    let credentials: Bool

    init(allowOrigins: [String], credentials: Bool = false) {
        self.allowOrigins = Set(allowOrigins)
        self.allowAny = allowOrigins.contains("*")
        self.credentials = credentials
    }

    /// Cookies may come from `origin`: named, not only allowed by `*`.
    private func allowsCredentials(from origin: String) -> Bool {
        credentials && allowOrigins.contains(origin)
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, or nil if it is not allowed.
    func allowedOrigin(_ origin: String) -> String? {
        // A credentialed answer must name the origin; `*` does not do for it.
        if allowsCredentials(from: origin) { return origin }
        if allowAny { return "*" }
        return allowOrigins.contains(origin) ? origin : nil
    }

    /// The CORS headers of an answer (not a preflight's) to a request from `origin`; none if the
    /// origin is not allowed.
    func responseHeaders(origin: String) -> [(String, String)] {
        guard let allowed = allowedOrigin(origin) else { return [] }
        var headers = [
            ("Access-Control-Allow-Origin", allowed), ("Access-Control-Expose-Headers", "X-Relay-Node, Retry-After, WWW-Authenticate"),
        ]
        if allowsCredentials(from: origin) { headers.append(("Access-Control-Allow-Credentials", "true")) }
        return headers
    }

    /// The headers of a preflight's answer (`OPTIONS` with `Access-Control-Request-Method`) from
    /// `origin`; none if the origin is not allowed.
    func preflightHeaders(origin: String) -> [(String, String)] {
        guard let allowed = allowedOrigin(origin) else { return [] }
        var headers = [
            ("Access-Control-Allow-Origin", allowed),
            ("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"),
            ("Access-Control-Allow-Headers", "Content-Type, Last-Event-ID, Idempotency-Key, Cache-Control, Authorization"),
            ("Access-Control-Max-Age", "600"),
        ]
        if allowsCredentials(from: origin) { headers.append(("Access-Control-Allow-Credentials", "true")) }
        return headers
    }
}

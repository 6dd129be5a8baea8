/// Why a request was not let in: a `401` (the credentials) or a `403` (what they grant).
///
/// `reason` labels the `chat_relay_auth_failures_total` metric and the log line; `detail` is for
/// the person reading the error body. Neither ever holds the token.
public struct AuthFailure: Error, Sendable, Equatable {
    public enum Reason: String, Sendable, CaseIterable {
        /// No token, cookie or ticket where one is needed.
        case missing
        /// Not a JWT, or claims of the wrong shape (the `rooms` claim, a missing `sub` or `exp`).
        case malformed
        /// An algorithm this node was not configured to accept (`none` among them).
        case algorithm
        /// No key for the token's `kid`, even after fetching the JWKS again.
        case unknownKey = "unknown_key"
        /// The signature does not verify with the key.
        case signature
        case expired
        case notYetValid = "not_yet_valid"
        case issuer
        case audience
        /// A ticket that does not exist, expired or was used already.
        case ticket
        /// A cookie-authenticated request from an origin `--allow-origin` does not list.
        case origin
        /// Valid credentials, but no grant for this room and action.
        case forbidden
    }

    public var reason: Reason
    public var detail: String
    /// The token's `sub`, when it was read (for the log line).
    public var subject: String?
    /// Nothing was wrong with the credentials: they could not be checked now (the broker holding
    /// tickets is unreachable). Answered `503`, not counted as a refusal; the ticket is not used up.
    public var checkUnavailable: Bool

    public init(_ reason: Reason, _ detail: String, subject: String? = nil, checkUnavailable: Bool = false) {
        self.reason = reason
        self.detail = detail
        self.subject = subject
        self.checkUnavailable = checkUnavailable
    }

    /// `403` rather than `401`: the credentials are good, what they grant is not enough.
    public var isForbidden: Bool { reason == .forbidden || reason == .origin }
}

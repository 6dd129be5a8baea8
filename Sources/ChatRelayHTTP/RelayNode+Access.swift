import ChatRelay
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import RelayAccess

extension RelayNode {
    /// The credentials a request presents, read from its head; nil with `--auth none` (nothing
    /// is read then). `ticket`: where a ticket may stand for a token (a stream).
    /// `client`: the request's client (`clientKey`), whose request bucket a refusal takes from.
    func credentials(head: HTTPRequestHead, target: RequestTarget, ticketAllowed: Bool, peer: SocketAddress?, client: String)
        -> Credentials?
    {
        guard access.requiresTokens else { return nil }
        let overTLS =
            configuration.trustedProxies.isTrusted(peer: peer)
            && head.headers["x-forwarded-proto"].last?.split(separator: ",").last?.trimmingCharacters(in: .whitespaces).lowercased()
                == "https"
        return Credentials(
            head: head, ticket: ticketAllowed ? target.value(of: "ticket") : nil, cookieName: access.cookie.name, overTLS: overTLS,
            client: client)
    }

    /// Who may do `action` in `room`: the identity `credentials` carry if it has the grant (or the
    /// room is public and `action` is reading), else `401`/`403`. Nil with `--auth none`, and for a
    /// reader of a public room who presented nothing. The one access check of the node, for every
    /// route that reads or posts.
    func authorize(_ credentials: Credentials?, _ action: AccessAction, room: RoomName) async throws(APIError) -> Identity? {
        try await authorize(credentials, action, rooms: [room])
    }

    /// Who may do `action` in every one of `rooms` (a stream of several): the credentials are
    /// read once (a ticket is taken once) and each room is checked as `authorize(_:_:room:)` does.
    func authorize(_ credentials: Credentials?, _ action: AccessAction, rooms: [RoomName]) async throws(APIError) -> Identity? {
        guard let credentials, access.requiresTokens else { return nil }
        let isPublicRead = { (room: RoomName) in action == .subscribe && self.access.isPublic(room) }
        var checked: RoomName? = rooms.first
        do throws(AuthFailure) {
            guard let identity = try await identify(credentials, changesState: action == .publish) else {
                if let closed = rooms.first(where: { !isPublicRead($0) }) {
                    checked = closed
                    throw AuthFailure(
                        .missing, "Room \(closed) needs a token: send Authorization: Bearer, the session cookie, or a ticket.")
                }
                return nil
            }
            for room in rooms where !isPublicRead(room) && !identity.allows(action, in: room) {
                checked = room
                throw AuthFailure(.forbidden, "Your token does not let you \(action.rawValue) in room \(room).", subject: identity.subject)
            }
            return identity
        } catch {
            throw refused(error, action: action.rawValue, room: checked, client: credentials.client)
        }
    }

    /// The identity `credentials` carry, verified; nil when they present nothing.
    /// - Parameter changesState: a cookie must come from an origin that may use it (`--allow-origin`
    ///   or the node's own), so another site cannot act for a logged-in user. A request that only
    ///   reads (a stream, history) may come without an `Origin` (a browser sends none on a
    ///   same-origin GET), but one that names another origin is refused too: a foreign page's
    ///   EventSource would put its visitor in a room's presence, and read as them.
    func identify(_ credentials: Credentials, changesState: Bool) async throws(AuthFailure) -> Identity? {
        guard let verifier = access.verifier else { return nil }
        switch credentials.presented {
        case .none:
            return nil
        case .unreadable:
            throw AuthFailure(.malformed, "The Authorization header must be 'Bearer <token>'.")
        case .bearer(let token):
            return try await verifier.verify(token)
        case .cookie(let token):
            if changesState || credentials.origin != nil, !credentials.originMayUseCookie(cors: cors) {
                throw AuthFailure(
                    .origin, "A request authenticated by the session cookie must come from an origin this node allows (--allow-origin).")
            }
            return try await verifier.verify(token)
        case .ticket(let ticket):
            return try await redeem(ticket: ticket)
        }
    }

    /// The identity a ticket stands for, taken from the broker (so it cannot be used again, on any
    /// node).
    private func redeem(ticket: String) async throws(AuthFailure) -> Identity {
        let unknown = AuthFailure(.ticket, "The ticket is unknown, expired or already used; ask for a new one.")
        guard StreamTicket.isWellFormed(ticket) else { throw unknown }
        let stored: [UInt8]?
        do {
            stored = try await broker.redeemTicket(ticket)
        } catch {
            logger.warning("cannot redeem a ticket", metadata: ["error": "\(error)"])
            throw AuthFailure(.ticket, "Tickets cannot be checked now; retry shortly.", checkUnavailable: true)
        }
        guard let stored, let identity = StreamTicket.decode(stored), identity.expiresAt > Date().timeIntervalSince1970 else {
            throw unknown
        }
        return identity
    }

    /// Counts and logs a refusal, and turns it into its answer. The log line has the reason and
    /// `sub`, never the token. A refused token takes from its client's request bucket
    /// (`--request-rate-limit`): a client that sprays tokens is soon refused before any is checked.
    func refused(_ failure: AuthFailure, action: String, room: RoomName?, client: String?) -> APIError {
        if failure.checkUnavailable { return .unavailable(failure.detail) }
        if let client, failure.reason != .missing { _ = requestLimiter.admit(client) }
        accessMetrics.failures[failure.reason]?.increment()
        var metadata: Logger.Metadata = ["reason": "\(failure.reason.rawValue)", "action": "\(action)"]
        if let subject = failure.subject { metadata["sub"] = "\(subject)" }
        if let room { metadata["room"] = "\(room)" }
        logger.info("access refused", metadata: metadata)
        if failure.isForbidden { return .forbidden(failure.detail) }
        return .unauthorized(failure.detail, invalidToken: failure.reason != .missing)
    }

    /// `POST /auth/tickets`: a single-use ticket for the caller's identity, valid for
    /// `--ticket-ttl` (never past the token's `exp`), for `GET …/events?ticket=` on any node.
    func ticketAnswer(_ credentials: Credentials?) async throws(APIError) -> Answer {
        let identity = try await callerIdentity(credentials, action: "ticket")
        let remaining = identity.expiresAt - Date().timeIntervalSince1970
        let ttl = min(access.ticketTTL, .milliseconds(Int64(clamping: max(1, remaining * 1000))))
        if let wait = ticketQuota.issue(for: identity.subject, ttl: ttl) {
            metrics.refusedForClient[.tickets]?.increment()
            throw APIError.clientLimit(
                "too_many_tickets",
                "This user has \(ticketQuota.limit) tickets waiting to be used on this node, its limit; use them, or retry in \(wait.wholeSecondsRoundedUp) s.",
                retryAfter: wait.wholeSecondsRoundedUp)
        }
        let ticket = StreamTicket.make()
        do {
            try await broker.storeTicket(ticket, value: StreamTicket.encode(identity), ttl: ttl)
        } catch {
            logger.warning("cannot store a ticket", metadata: ["error": "\(error)"])
            throw APIError.unavailable("A ticket cannot be issued now; retry shortly.")
        }
        accessMetrics.ticketsIssued.increment()
        var body = ByteBuffer()
        body.writeString("{\"ticket\":\"\(ticket)\",\"expiresIn\":\(max(1, ttl.wholeMilliseconds / 1000))}")
        return Answer(status: .created, contentType: Answer.jsonType, body: body, headers: [("Cache-Control", "no-store")])
    }

    /// `POST /auth/session`: sets the session cookie to the bearer token, for pages whose
    /// EventSource sends cookies (`withCredentials`). `HttpOnly` (no script reads it), `Secure` over
    /// TLS, `SameSite` as configured, gone when the token expires.
    func sessionAnswer(_ credentials: Credentials?) async throws(APIError) -> Answer {
        guard access.requiresTokens else { throw Self.accessOff }
        guard let credentials, case .bearer(let token) = credentials.presented else {
            throw refused(
                AuthFailure(.missing, "Send the token to store as Authorization: Bearer."), action: "session", room: nil,
                client: credentials?.client)
        }
        let identity = try await callerIdentity(credentials, action: "session")
        let maxAge = max(1, Int(clamping: identity.expiresAt - Date().timeIntervalSince1970))
        let cookie = sessionCookie(value: token, maxAge: maxAge, overTLS: credentials.overTLS)
        return Answer(
            status: .noContent, contentType: nil, body: ByteBuffer(), headers: [("Set-Cookie", cookie), ("Cache-Control", "no-store")])
    }

    /// `DELETE /auth/session`: clears the session cookie.
    func endSessionAnswer(_ credentials: Credentials?) -> Answer {
        guard access.requiresTokens else { return Answer(Self.accessOff) }
        let cookie = sessionCookie(value: "", maxAge: 0, overTLS: credentials?.overTLS == true)
        return Answer(status: .noContent, contentType: nil, body: ByteBuffer(), headers: [("Set-Cookie", cookie)])
    }

    /// The session cookie's `Set-Cookie` value, with the same attributes whether set or cleared
    /// (a browser matches them to replace it).
    private func sessionCookie(value: String, maxAge: Int, overTLS: Bool) -> String {
        let cookie = "\(access.cookie.name)=\(value); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=\(access.cookie.sameSite)"
        return overTLS ? cookie + "; Secure" : cookie
    }

    /// The answer of the `/auth/…` endpoints with `--auth none`.
    static let accessOff = APIError(.notFound, code: "not_found", message: "Access control is off on this node (--auth none).")

    /// The verified identity of the caller of an `/auth/…` endpoint (a token is required).
    private func callerIdentity(_ credentials: Credentials?, action: String) async throws(APIError) -> Identity {
        guard let credentials, access.requiresTokens else { throw Self.accessOff }
        do throws(AuthFailure) {
            if case .ticket = credentials.presented {
                throw AuthFailure(.missing, "A ticket opens a stream only; send a token.")
            }
            guard let identity = try await identify(credentials, changesState: true) else {
                throw AuthFailure(.missing, "Send a token: Authorization: Bearer, or the session cookie.")
            }
            return identity
        } catch {
            throw refused(error, action: action, room: nil, client: credentials.client)
        }
    }
}

/// Counters of the access checks.
struct AccessMetrics: Sendable {
    /// `chat_relay_auth_failures_total{reason}`.
    let failures: [AuthFailure.Reason: Counter]
    /// `chat_relay_tickets_issued_total`.
    let ticketsIssued: Counter
    /// `chat_relay_subscribers_dropped_total{reason="token_expired"}`.
    let streamsExpired: Counter

    init(factory: any MetricsFactory) {
        var failures: [AuthFailure.Reason: Counter] = [:]
        for reason in AuthFailure.Reason.allCases {
            failures[reason] = Counter(label: "chat_relay_auth_failures_total", dimensions: [("reason", reason.rawValue)], factory: factory)
        }
        self.failures = failures
        ticketsIssued = Counter(label: "chat_relay_tickets_issued_total", factory: factory)
        streamsExpired = Counter(label: "chat_relay_subscribers_dropped_total", dimensions: [("reason", "token_expired")], factory: factory)
    }
}

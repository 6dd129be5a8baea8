import ChatRelay

/// Who may read and post where: `--auth none` (anyone, as anyone) or `--auth jwt` (a verified
/// token's identity and grants), with the rooms anyone may read, the session cookie's settings and
/// the stream tickets' lifetime.
public struct AccessPolicy: Sendable {
    /// Verifies tokens; nil with `--auth none`.
    public var verifier: TokenVerifier?
    /// Rooms anyone may subscribe to and read the history of, without a token (`--public-rooms`).
    public var publicRooms: [RoomPattern]
    /// The session cookie (`POST /auth/session`).
    public var cookie: CookieSettings
    /// How long a stream ticket (`POST /auth/tickets`) may wait to be used.
    public var ticketTTL: Duration
    /// Where the node's page gets a fresh token for its signed-in user (`--page-token-url`): the
    /// operator's app, which knows the user by its own session. Nil: the page asks for one.
    public var pageTokenURL: String?

    public init(
        verifier: TokenVerifier? = nil, publicRooms: [RoomPattern] = [], cookie: CookieSettings = CookieSettings(),
        ticketTTL: Duration = .seconds(30)
    ) {
        self.verifier = verifier
        self.publicRooms = publicRooms
        self.cookie = cookie
        self.ticketTTL = ticketTTL
        self.pageTokenURL = nil
    }

    /// `--auth none`: no identities, every room open to all.
    public static let open = AccessPolicy()

    public var requiresTokens: Bool { verifier != nil }

    /// True if anyone may read `room` without a token.
    public func isPublic(_ room: RoomName) -> Bool {
        publicRooms.matches(room)
    }
}

/// The session cookie's name and `SameSite`; `Secure` is set when the request came over TLS.
public struct CookieSettings: Sendable {
    public var name: String
    /// `Strict`, `Lax` or `None` (`None` only with `Secure`: browsers drop it otherwise).
    public var sameSite: String

    public init(name: String = "chat_relay_token", sameSite: String = "Strict") {
        self.name = name
        self.sameSite = sameSite
    }
}

import ChatRelay
import RelayAccess

/// Everything a node's HTTP layer needs to know, resolved from flags and environment.
public struct RelayConfiguration: Sendable {
    /// The node's name in `X-Relay-Node`, logs and the health body.
    public var nodeID: String
    /// Messages retained per room by the embedded broker.
    public var history: Int = 1000
    /// The most bytes all rooms' history may hold on the embedded broker (0: no bound); past it
    /// the least recently used rooms are forgotten. (On Redis, Redis's own `maxmemory` bounds it.)
    public var historyMemory: Int = 256 << 20
    /// A room's history expires this long after its last message (nil: never).
    public var historyTTL: Duration? = .seconds(24 * 3600)
    /// How often an idle stream gets a heartbeat comment.
    public var heartbeat: Duration = .seconds(15)
    /// The `retry:` a stream opens with, in milliseconds.
    public var retryMilliseconds: Int = 2000
    /// The most open streams; beyond it `503`.
    public var maxConnections: Int = 10_000
    /// The most open connections of any kind (streams, kept-alive, half-sent requests); beyond it
    /// a new connection's first request gets `503` and the connection closes. Nil: 1000 more
    /// than `maxConnections`, so health checks and POSTs still get through at the stream limit.
    public var maxOpenConnections: Int?
    /// A request's head and body must arrive within this time from its first byte (a new
    /// connection's first request: from the connection's opening); else `408` and the connection
    /// closes.
    public var requestTimeout: Duration = .seconds(30)
    /// A kept-alive connection with no request for this long after its last answer is closed.
    public var idleTimeout: Duration = .seconds(60)
    /// The most rooms one stream may follow (`GET /events?room=…&room=…`), at most
    /// `StreamPosition.maximumRooms`.
    public var maxStreamRooms: Int = StreamPosition.maximumRooms
    /// A node whose presence mark is this old is gone: its members leave (Redis).
    public var presenceTTL: Duration = .seconds(15)
    /// The most members a presence answer or event lists; above it, counts.
    public var presenceCap: Int = 100
    /// How long presence changes are gathered before a room's streams hear of them.
    public var presenceInterval: Duration = .seconds(1)
    /// The most bytes of a POST body; beyond it `413`.
    public var maxBodyBytes: Int = 16 * 1024
    /// The most UTF-8 bytes of a message's text.
    public var maxMessageBytes: Int = 4096
    /// POSTs per second per client (0: no limit) and the burst it may take at once.
    public var rateLimit: Double = 20
    public var rateBurst: Double = 40
    /// What one client (an address, a token's `sub`) may hold or ask of the node.
    public var clientLimits = ClientLimits()
    /// The proxies whose `X-Forwarded-For` is believed: the rate limit counts the rightmost
    /// address in it that is not one of them. Empty: the connection's own address.
    public var trustedProxies = TrustedProxies()
    /// Messages that may wait for one subscriber before it is disconnected as slow.
    public var subscriberBuffer: Int = 1024
    /// How long a drain may take, from the signal to the process exit.
    public var drainTimeout: Duration = .seconds(10)
    /// Origins allowed to use the API from a browser (`*` for any); empty: no CORS headers.
    public var allowOrigins: [String] = []
    /// Who may read and post where (`--auth`, `--public-rooms`, …): open to all by default.
    public var access = AccessPolicy.open

    public init(nodeID: String) {
        self.nodeID = nodeID
    }

    /// Streams are ended spread over this time while draining: half the drain timeout, at most 5 s.
    public var drainSpread: Duration { min(.seconds(5), drainTimeout / 2) }

    /// The random reconnection delay (ms) given to each stream ended while draining.
    public var drainRetryMilliseconds: ClosedRange<Int> { 500...max(500, min(5000, retryMilliseconds * 2)) }

    public var messageLimits: MessageLimits { MessageLimits(maxTextBytes: maxMessageBytes) }

    /// `maxOpenConnections`, or its default.
    public var openConnectionLimit: Int { maxOpenConnections ?? maxConnections + 1000 }
}

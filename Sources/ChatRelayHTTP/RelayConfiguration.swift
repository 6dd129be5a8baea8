import ChatRelay

/// Everything a node's HTTP layer needs to know, resolved from flags and environment.
public struct RelayConfiguration: Sendable {
    /// The node's name in `X-Relay-Node`, logs and the health body.
    public var nodeID: String
    /// Messages retained per room by the embedded broker.
    public var history: Int = 1000
    /// How often an idle stream gets a heartbeat comment.
    public var heartbeat: Duration = .seconds(15)
    /// The `retry:` a stream opens with, in milliseconds.
    public var retryMilliseconds: Int = 2000
    /// The most open streams; beyond it `503`.
    public var maxConnections: Int = 10_000
    /// The most bytes of a POST body; beyond it `413`.
    public var maxBodyBytes: Int = 16 * 1024
    /// The most UTF-8 bytes of a message's text.
    public var maxMessageBytes: Int = 4096
    /// POSTs per second per client (0: no limit) and the burst it may take at once.
    public var rateLimit: Double = 20
    public var rateBurst: Double = 40
    /// Take the client address for the rate limit from `X-Forwarded-For` (behind a trusted proxy).
    public var trustForwardedFor = false
    /// Messages that may wait for one subscriber before it is disconnected as slow.
    public var subscriberBuffer: Int = 1024
    /// How long a drain may take, from the signal to the process exit.
    public var drainTimeout: Duration = .seconds(10)
    /// Origins allowed to use the API from a browser (`*` for any); empty: no CORS headers.
    public var allowOrigins: [String] = []

    public init(nodeID: String) {
        self.nodeID = nodeID
    }

    /// Streams are ended spread over this time while draining: half the drain timeout, at most 5 s.
    public var drainSpread: Duration { min(.seconds(5), drainTimeout / 2) }

    /// The random reconnection delay (ms) given to each stream ended while draining.
    public var drainRetryMilliseconds: ClosedRange<Int> { 500...max(500, min(5000, retryMilliseconds * 2)) }

    public var messageLimits: MessageLimits { MessageLimits(maxTextBytes: maxMessageBytes) }
}

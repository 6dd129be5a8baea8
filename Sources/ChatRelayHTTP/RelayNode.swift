import ChatRelay
import Logging
import Metrics
import NIOCore
import Prometheus
import RelayAccess
import ServiceLifecycle

/// One relay node: its hub, broker, limits and metrics, and the HTTP server serving them.
public final class RelayNode: Sendable {
    public let configuration: RelayConfiguration
    public let hub: Hub
    public let broker: any Broker
    public let metrics: RelayMetrics
    public let registry: PrometheusCollectorRegistry
    public let rateLimiter: RateLimiter
    /// The bucket of each client's stream opens, history and presence reads, tickets, sessions
    /// and refused tokens (`--request-rate-limit`).
    let requestLimiter: RateLimiter
    /// Open connections of every kind, against `--max-open-connections` and
    /// `--max-connections-per-client`.
    let connections: ConnectionLimiter
    /// Open streams per client address (`--max-streams-per-client`) and per token `sub`
    /// (`--max-streams-per-user`).
    let streamsPerClient: ClientCounts
    let streamsPerUser: ClientCounts
    /// Tickets issued per user and still alive (`--max-tickets-per-user`).
    let ticketQuota: TicketQuota
    /// The CORS policy of `--allow-origin`, or nil without it.
    let cors: CORSPolicy?
    /// `configuration.access`.
    let access: AccessPolicy
    let accessMetrics: AccessMetrics
    /// The page (`GET /`), made once: it names `--page-token-url`.
    let page: ByteBuffer
    /// The page's own headers (`pageHeaders(tokenURL:)`).
    let pageHeaders: [(String, String)]
    let logger: Logger
    let startedAt = MonotonicClock.nanoseconds()
    /// This node's presence changes, in order, on their way to the broker (`PresenceService`).
    let presenceUpdates: PresenceUpdates
    /// Answers of `GET /rooms/{room}/presence`, shared by concurrent requests, and those of rooms
    /// above `--presence-cap` kept for a presence interval.
    let presenceAnswers: SharedReads<RoomName, Answer>

    /// - Parameter makeBroker: builds the broker around the node's hub (its live-event sink).
    public init(
        configuration: RelayConfiguration,
        logger: Logger,
        makeBroker: (Hub, RelayMetrics) -> any Broker
    ) {
        self.configuration = configuration
        self.logger = logger
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
        ]
        self.registry = registry
        let metrics = RelayMetrics(factory: factory)
        self.access = configuration.access
        self.accessMetrics = AccessMetrics(factory: factory)
        self.page = ByteBuffer(string: ChatPage.html(tokenURL: configuration.access.pageTokenURL))
        self.pageHeaders = Self.pageHeaders(tokenURL: configuration.access.pageTokenURL)
        self.metrics = metrics
        self.presenceUpdates = PresenceUpdates(dropped: metrics.presenceDropped)
        self.presenceAnswers = SharedReads(maxAge: configuration.presenceInterval, capacity: Self.keptPresenceAnswers)
        // The node in presence entries: its id and when it started, so that a node restarted
        // under the same id does not take on the entries of the one before.
        let presence = PresenceBook(node: "\(configuration.nodeID):\(Timestamp.nowMilliseconds())", cap: configuration.presenceCap)
        let hub = Hub(
            subscriberBuffer: configuration.subscriberBuffer, maxConnections: configuration.maxConnections, metrics: metrics,
            presence: presence)
        self.hub = hub
        self.broker = makeBroker(hub, metrics)
        self.rateLimiter = RateLimiter(rate: configuration.rateLimit, burst: configuration.rateBurst)
        let limits = configuration.clientLimits
        self.requestLimiter = RateLimiter(rate: limits.requestRate, burst: limits.requestBurst)
        self.connections = ConnectionLimiter(limit: configuration.openConnectionLimit, perClient: limits.connectionsPerClient)
        self.streamsPerClient = ClientCounts(limit: limits.streamsPerClient)
        self.streamsPerUser = ClientCounts(limit: limits.streamsPerUser)
        self.ticketQuota = TicketQuota(limit: limits.ticketsPerUser)
        self.cors =
            configuration.allowOrigins.isEmpty
            ? nil : CORSPolicy(allowOrigins: configuration.allowOrigins, credentials: configuration.access.requiresTokens)
        metrics.openStreams.set(0)
        metrics.openConnections.set(0)
        metrics.subscribedRooms.set(0)
    }

    /// The node with the embedded in-process broker.
    public convenience init(configuration: RelayConfiguration, logger: Logger) {
        self.init(configuration: configuration, logger: logger) { hub, metrics in
            EmbeddedBroker(
                history: configuration.history, historyTTL: configuration.historyTTL, historyMemory: configuration.historyMemory, sink: hub,
                metrics: metrics)
        }
    }

    /// Serves on `host:port` until SIGTERM or SIGINT, then drains: readiness turns 503 at once,
    /// new streams are refused, open streams end spread over a few seconds, in-flight requests
    /// finish, and the function returns within the drain timeout.
    public func run(host: String, port: Int) async throws {
        // Graceful shutdown runs in reverse order: the drain first (the server still answers, so
        // POSTs finish and readiness says 503), then the server stops listening and closes its
        // connections as they finish, then the heartbeats and the broker stop.
        var groupConfiguration = ServiceGroupConfiguration(
            services: [
                .init(service: BrokerService(broker: broker, metrics: metrics)),
                .init(service: HeartbeatService(hub: hub, interval: configuration.heartbeat)),
                .init(service: PresenceService(node: self)),
                .init(service: RelayServer(node: self, host: host, port: port)),
                .init(service: DrainService(hub: hub, configuration: configuration, logger: logger)),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        groupConfiguration.maximumGracefulShutdownDuration = configuration.drainTimeout
        groupConfiguration.maximumCancellationDuration = .seconds(2)
        try await ServiceGroup(configuration: groupConfiguration).run()
    }

    /// True when this node can publish and receive and is not draining.
    public var isReady: Bool { broker.isReady && !hub.isDraining }
}

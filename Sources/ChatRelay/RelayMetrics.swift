import Metrics

/// The relay's metrics, created on a given factory so that each node (and each test) has its own
/// registry instead of one process-wide bootstrap.
public struct RelayMetrics: Sendable {
    /// Open SSE streams on this node.
    public let openStreams: Meter
    /// Rooms with at least one open stream on this node.
    public let subscribedRooms: Meter
    /// Open connections of every kind (streams, kept-alive, half-sent requests).
    public let openConnections: Meter
    /// Connections closed because a request did not arrive in full within the request timeout,
    /// or because no request came within the idle timeout.
    public let requestTimeouts: Counter
    public let idleTimeouts: Counter
    /// Messages this node accepted (201).
    public let messagesPublished: Counter
    /// Signals relayed from this node: typing, and presence changes (joins and leaves it sent).
    public let typingSignals: Counter
    public let presenceSignals: Counter
    /// Presence changes dropped because too many were waiting for the broker.
    public let presenceDropped: Counter
    /// Events handed to local subscribers (one per subscriber per message).
    public let eventsDelivered: Counter
    /// Times a stream's socket took less than it was given, so the rest waited in the node until
    /// the client read: a sign of subscribers reading slower than events come.
    public let streamWritesDeferred: Counter
    /// Subscribers this node disconnected because their buffer was full.
    public let droppedSlow: Counter
    /// Streams this node ended while draining.
    public let droppedDraining: Counter
    /// Requests refused: over the rate limit, at the connection limit.
    public let rateLimited: Counter
    public let connectionLimited: Counter
    /// Connections refused (answered `503`, or closed at once) past `--max-open-connections`.
    public let openConnectionsLimited: Counter
    /// Requests and connections refused at one client's own bound
    /// (`chat_relay_requests_refused_total{reason="connections_per_client"}`, …).
    public let refusedForClient: [ClientBound: Counter]
    /// 1 when the broker connection and subscription are up.
    public let brokerUp: Gauge
    /// 1 while the node answers readiness with `200` (broker up, not draining), as of the scrape.
    public let ready: Gauge
    /// The node's stream limit (`--max-connections`), for alerts on open streams near it.
    public let maxStreams: Gauge
    /// POSTs answered `503`: the broker could not store the message (`unavailable`), or stored
    /// it without the replica acknowledgements `--redis-min-replicas-ack` asks for (`unreplicated`).
    public let publishUnavailable: Counter
    public let publishUnreplicated: Counter
    /// `chat_relay_publish_failures_total{reason="full"}`: Redis refused the write (maxmemory).
    public let publishFull: Counter
    /// `chat_relay_rooms_evicted_total`: rooms the embedded broker forgot to stay within
    /// `--history-memory`.
    public let roomsEvicted: Counter
    /// Broker reconnections after a loss.
    public let brokerReconnects: Counter
    /// Time from POST accepted to broker confirmation.
    public let publishLatency: Timer
    /// Messages read from history after a lost subscription came back, to fill the gap.
    public let gapFillMessages: Counter
    /// Streams that ended after part of their replay (it was longer than `Replay.streamLimit`)
    /// for their clients to come back for the rest.
    public let replaysContinued: Counter
    /// Round trips on the Redis command connection, and the callers' requests they carried
    /// (requests / round trips = how many POSTs share a round trip).
    public let redisRoundTrips: Counter
    public let redisRequests: Counter
    /// Room channels this node's subscriber connections hold (`ChannelRouting.room`), lingering ones included.
    public let redisRoomChannels: Meter
    /// Live events this node received from Redis: with a channel per room, only those of rooms
    /// it serves.
    public let redisEventsReceived: Counter
    /// On a Redis Cluster: readings of the slot map, and commands redirected (`MOVED`, `ASK`).
    public let redisSlotMapRefreshes: Counter
    public let redisMovedRedirects: Counter
    public let redisAskRedirects: Counter
    private let factory: any MetricsFactory

    /// On a Redis Cluster: 1 while this node reaches the master `shard` (`host:port`) and holds
    /// its channels, 0 while not.
    public func redisShardUp(_ shard: String) -> Gauge {
        Gauge(label: "chat_relay_redis_shard_up", dimensions: [("shard", shard)], factory: factory)
    }

    public init(factory: any MetricsFactory) {
        self.factory = factory
        openStreams = Meter(label: "chat_relay_open_streams", factory: factory)
        subscribedRooms = Meter(label: "chat_relay_subscribed_rooms", factory: factory)
        openConnections = Meter(label: "chat_relay_open_connections", factory: factory)
        requestTimeouts = Counter(label: "chat_relay_connections_timed_out_total", dimensions: [("reason", "request")], factory: factory)
        idleTimeouts = Counter(label: "chat_relay_connections_timed_out_total", dimensions: [("reason", "idle")], factory: factory)
        messagesPublished = Counter(label: "chat_relay_messages_published_total", factory: factory)
        typingSignals = Counter(label: "chat_relay_signals_sent_total", dimensions: [("kind", "typing")], factory: factory)
        presenceSignals = Counter(label: "chat_relay_signals_sent_total", dimensions: [("kind", "presence")], factory: factory)
        presenceDropped = Counter(label: "chat_relay_presence_changes_dropped_total", factory: factory)
        eventsDelivered = Counter(label: "chat_relay_events_delivered_total", factory: factory)
        streamWritesDeferred = Counter(label: "chat_relay_stream_writes_deferred_total", factory: factory)
        droppedSlow = Counter(label: "chat_relay_subscribers_dropped_total", dimensions: [("reason", "slow")], factory: factory)
        droppedDraining = Counter(label: "chat_relay_subscribers_dropped_total", dimensions: [("reason", "draining")], factory: factory)
        rateLimited = Counter(label: "chat_relay_requests_refused_total", dimensions: [("reason", "rate_limited")], factory: factory)
        connectionLimited = Counter(
            label: "chat_relay_requests_refused_total", dimensions: [("reason", "max_connections")], factory: factory)
        openConnectionsLimited = Counter(
            label: "chat_relay_requests_refused_total", dimensions: [("reason", "max_open_connections")], factory: factory)
        var refusedForClient: [ClientBound: Counter] = [:]
        for bound in ClientBound.allCases {
            refusedForClient[bound] = Counter(
                label: "chat_relay_requests_refused_total", dimensions: [("reason", bound.rawValue)], factory: factory)
        }
        self.refusedForClient = refusedForClient
        brokerUp = Gauge(label: "chat_relay_broker_up", factory: factory)
        ready = Gauge(label: "chat_relay_ready", factory: factory)
        maxStreams = Gauge(label: "chat_relay_max_streams", factory: factory)
        publishUnavailable = Counter(label: "chat_relay_publish_failures_total", dimensions: [("reason", "unavailable")], factory: factory)
        publishUnreplicated = Counter(
            label: "chat_relay_publish_failures_total", dimensions: [("reason", "unreplicated")], factory: factory)
        publishFull = Counter(label: "chat_relay_publish_failures_total", dimensions: [("reason", "full")], factory: factory)
        roomsEvicted = Counter(label: "chat_relay_rooms_evicted_total", factory: factory)
        brokerReconnects = Counter(label: "chat_relay_broker_reconnects_total", factory: factory)
        gapFillMessages = Counter(label: "chat_relay_gap_fill_messages_total", factory: factory)
        replaysContinued = Counter(label: "chat_relay_replays_continued_total", factory: factory)
        redisRoundTrips = Counter(label: "chat_relay_redis_round_trips_total", factory: factory)
        redisRequests = Counter(label: "chat_relay_redis_requests_total", factory: factory)
        redisRoomChannels = Meter(label: "chat_relay_redis_room_channels", factory: factory)
        redisEventsReceived = Counter(label: "chat_relay_redis_events_received_total", factory: factory)
        redisSlotMapRefreshes = Counter(label: "chat_relay_redis_slot_map_refreshes_total", factory: factory)
        redisMovedRedirects = Counter(label: "chat_relay_redis_redirects_total", dimensions: [("kind", "moved")], factory: factory)
        redisAskRedirects = Counter(label: "chat_relay_redis_redirects_total", dimensions: [("kind", "ask")], factory: factory)
        publishLatency = Timer(label: "chat_relay_publish_duration_seconds", preferredDisplayUnit: .seconds, factory: factory)
    }

    /// Metrics that go nowhere, for tests that do not look at them.
    public static var discarding: RelayMetrics { RelayMetrics(factory: NOOPMetricsHandler.instance) }
}

/// A bound on what one client may hold or ask of a node, as its refusals are counted.
public enum ClientBound: String, CaseIterable, Sendable {
    case connections = "connections_per_client"
    case streams = "streams_per_client"
    case userStreams = "streams_per_user"
    case tickets = "tickets_per_user"
    case requests = "request_rate"
}

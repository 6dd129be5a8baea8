import ArgumentParser
import ChatRelay
import ChatRelayHTTP
import Foundation
import Logging
import RedisClient

/// `chat-relay serve`: one relay node.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve one relay node (the default when no subcommand is given).",
        discussion: "SIGTERM or SIGINT drains the node: readiness turns 503, streams end spread over a few seconds, then it exits 0."
    )

    @Option(help: "Address to listen on. (env: HOST, default: 0.0.0.0)")
    var host: String?

    @Option(help: "Port to listen on. (env: PORT, default: 8080)")
    var port: Int?

    @Option(name: .customLong("node-id"), help: "This node's name in X-Relay-Node, logs and health. (env: NODE_ID, default: the host name)")
    var nodeID: String?

    @Option(
        name: .customLong("redis-url"),
        help:
            "Run in cluster mode on this Redis: redis://[[user]:password@]host[:port][/db]. Several addresses separated by commas (redis://h1:7000,h2:7001,…; after the first, host:port takes the first's password) are the seeds of a Redis Cluster: each room's keys and channel go to the master of the room's hash slot. Without it the node runs alone on the embedded broker. (env: REDIS_URL)"
    )
    var redisURL: String?

    @Flag(
        name: .customLong("redis-cluster"),
        help: "The --redis-url names a Redis Cluster even with one address (with several it always does). (env: REDIS_CLUSTER=1)")
    var redisCluster = false

    @Option(
        name: .customLong("redis-prefix"),
        help: "Prefix of every Redis key and channel, so deployments can share a Redis. (env: REDIS_PREFIX, default: chat-relay)")
    var redisPrefix: String?

    @Option(
        name: .customLong("redis-channels"),
        help:
            "How live events reach the nodes: room (a pub/sub channel per room, subscribed only by the nodes that serve the room) or shared (one channel that every node hears, cheaper with few rooms that every node serves; not on a Redis Cluster). (env: REDIS_CHANNELS, default: room)"
    )
    var redisChannels: String?

    @Option(
        name: .customLong("room-linger"),
        help:
            "With --redis-channels room: how long a node stays subscribed to a room's channel after its last subscriber there left, so a page reload does not resubscribe. Seconds, or with s, m, h. (env: ROOM_LINGER, default: 10s)"
    )
    var roomLinger: String?

    @Option(
        name: .customLong("redis-min-replicas-ack"),
        help:
            "Answer 201 only once this many replicas of the message's Redis (on a cluster: of its room's master) have it (WAIT after the publish script), so a master that dies right after loses nothing acknowledged. A message they do not confirm in time was stored but gets 503: retry it with the same Idempotency-Key. 0: Redis's own asynchronous replication. (env: REDIS_MIN_REPLICAS_ACK, default: 0)"
    )
    var redisMinReplicasAck: Int?

    @Option(
        name: .customLong("redis-replicas-ack-timeout"),
        help:
            "With --redis-min-replicas-ack: how long to wait for the replicas. Seconds, or with s, m. (env: REDIS_REPLICAS_ACK_TIMEOUT, default: 1s)"
    )
    var redisReplicasAckTimeout: String?

    @Option(help: "Messages kept per room (in memory, or in the room's Redis stream). (env: HISTORY, default: 1000)")
    var history: Int?

    @Option(
        name: .customLong("history-ttl"),
        help:
            "A room's history expires this long after its last message; 0 keeps it for ever. A client resuming in an expired room gets event: reset. Seconds, or with s, m, h, d. (env: HISTORY_TTL, default: 24h)"
    )
    var historyTTL: String?

    @Option(
        help:
            "Seconds between heartbeat comments on an idle stream; a stream whose connection is still full at 4 in a row (its client stopped reading) is closed. (env: HEARTBEAT, default: 15)"
    )
    var heartbeat: Double?

    @Option(
        name: .customLong("history-memory"),
        help:
            "Most memory all rooms' history may take on the embedded broker (no Redis): bytes, or with KiB, MiB, GiB (or K, M, G); past it the least recently used rooms are forgotten (a client resuming there gets reset). 0: no bound. On Redis, set Redis's maxmemory. (env: HISTORY_MEMORY, default: 256MiB)"
    )
    var historyMemory: String?

    @Option(
        name: .customLong("retry-ms"),
        help: "The retry: (ms) every stream opens with: how soon a client reconnects. (env: RETRY_MS, default: 2000)")
    var retryMilliseconds: Int?

    @Option(
        name: .customLong("max-connections"),
        help: "Most open streams; beyond it 503 with Retry-After. (env: MAX_CONNECTIONS, default: 10000)")
    var maxConnections: Int?

    @Option(
        name: .customLong("presence-ttl"),
        help:
            "How long a node may go without refreshing its presence mark in Redis before its members leave every room (a crashed node's members are gone within this and a third more). Seconds, or with s, m, h. (env: PRESENCE_TTL, default: 15s)"
    )
    var presenceTTL: String?

    @Option(
        name: .customLong("presence-cap"),
        help:
            "Most members GET /rooms/{room}/presence lists and a presence event names; a room with more gets counts. (env: PRESENCE_CAP, default: 100)"
    )
    var presenceCap: Int?

    @Option(
        name: .customLong("max-stream-rooms"),
        help:
            "Most rooms one stream may follow (GET /events?room=a&room=b…); more get 400. At most 100. (env: MAX_STREAM_ROOMS, default: 100)"
    )
    var maxStreamRooms: Int?

    @Option(
        name: .customLong("max-open-connections"),
        help:
            "Most open connections of any kind (streams, kept-alive, half-sent requests); beyond it a new connection's request gets 503 with Retry-After and the connection closes. (env: MAX_OPEN_CONNECTIONS, default: --max-connections + 1000)"
    )
    var maxOpenConnections: Int?

    @Option(
        name: .customLong("request-timeout"),
        help:
            "Time a request's head and body may take to arrive, from its first byte (a new connection: from its opening); then 408 and the connection closes. Seconds, or with s, m, h. (env: REQUEST_TIMEOUT, default: 30)"
    )
    var requestTimeout: String?

    @Option(
        name: .customLong("idle-timeout"),
        help:
            "Time a kept-alive connection may wait for its next request; then it is closed. Seconds, or with s, m, h. (env: IDLE_TIMEOUT, default: 60)"
    )
    var idleTimeout: String?

    @Option(name: .customLong("max-body-bytes"), help: "Most bytes of a POST body; beyond it 413. (env: MAX_BODY_BYTES, default: 16384)")
    var maxBodyBytes: Int?

    @Option(
        name: .customLong("max-message-bytes"),
        help: "Most UTF-8 bytes of a message's text; beyond it 400. (env: MAX_MESSAGE_BYTES, default: 4096)")
    var maxMessageBytes: Int?

    @Option(
        name: .customLong("rate-limit"),
        help:
            "POSTs per second per client, a token bucket; 0 turns the limit off. Beyond it 429 with Retry-After. (env: RATE_LIMIT, default: 20)"
    )
    var rateLimit: Double?

    @Option(
        name: .customLong("rate-burst"), help: "POSTs a client may send at once before --rate-limit applies. (env: RATE_BURST, default: 40)"
    )
    var rateBurst: Double?

    @Option(
        name: .customLong("max-streams-per-client"),
        help:
            "Most open streams of one client address (behind --trusted-proxies, the forwarded one); beyond it 429. 0: no limit. (env: MAX_STREAMS_PER_CLIENT, default: 100, at most a quarter of --max-connections)"
    )
    var maxStreamsPerClient: Int?

    @Option(
        name: .customLong("max-streams-per-user"),
        help: "Most open streams of one token sub (--auth jwt); beyond it 429. 0: no limit. (env: MAX_STREAMS_PER_USER, default: 20)")
    var maxStreamsPerUser: Int?

    @Option(
        name: .customLong("max-connections-per-client"),
        help:
            "Most open connections of any kind from one address (trusted proxies are not counted); beyond it a new connection's request gets 429 and the connection closes. 0: no limit. (env: MAX_CONNECTIONS_PER_CLIENT, default: 200, at most a quarter of --max-open-connections)"
    )
    var maxConnectionsPerClient: Int?

    @Option(
        name: .customLong("max-tickets-per-user"),
        help:
            "Most stream tickets one token sub may have waiting (issued within --ticket-ttl); beyond it 429. 0: no limit. (env: MAX_TICKETS_PER_USER, default: 30)"
    )
    var maxTicketsPerUser: Int?

    @Option(
        name: .customLong("request-rate-limit"),
        help:
            "Stream opens, history and presence reads, tickets and sessions per second per client, a token bucket (a refused token takes from it too); 0 turns it off. Beyond it 429 with Retry-After. (env: REQUEST_RATE_LIMIT, default: 20)"
    )
    var requestRateLimit: Double?

    @Option(
        name: .customLong("request-rate-burst"),
        help: "Such requests a client may send at once before --request-rate-limit applies. (env: REQUEST_RATE_BURST, default: 100)")
    var requestRateBurst: Double?

    @Flag(
        name: .customLong("no-client-limits"),
        help:
            "Turn off every per-client bound above (streams, connections, tickets, the request rate): for load tests, where one address plays thousands of clients."
    )
    var noClientLimits = false

    @Option(
        name: .customLong("trusted-proxies"),
        help:
            "Addresses or CIDR ranges of the proxies in front of the node, comma-separated (e.g. 10.0.0.0/8,127.0.0.1). A request from one of them is rate-limited by the rightmost X-Forwarded-For address that is not a trusted proxy, never by one the client wrote. (env: TRUSTED_PROXIES, default: none: the connection's address)"
    )
    var trustedProxies: String?

    @Flag(name: .customLong("trust-forwarded-for"), help: .hidden)
    var trustForwardedFor = false

    @Option(
        name: .customLong("subscriber-buffer"),
        help:
            "Messages a slow subscriber may fall behind (sent while its connection already holds 64 KiB unsent, or while its replay is written) before it is disconnected. (env: SUBSCRIBER_BUFFER, default: 1024)"
    )
    var subscriberBuffer: Int?

    @Option(
        name: .customLong("drain-timeout"),
        help: "Seconds from SIGTERM to exit: streams end spread over half of it (at most 5 s). (env: DRAIN_TIMEOUT, default: 10)")
    var drainTimeout: Double?

    @Option(
        name: .customLong("allow-origin"),
        help:
            "An origin allowed to use the API from a browser (CORS); repeat it, or give *. (env: ALLOW_ORIGIN, comma-separated; default: none)"
    )
    var allowOrigin: [String] = []

    @OptionGroup(title: "Access control")
    var access: AccessOptions

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical. (env: LOG_LEVEL, default: info)")
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: "text or json (one object a line). (env: LOG_FORMAT, default: text)")
    var logFormat: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var configured = try Settings(command: self, environment: environment)
        let nodeID = configured.relay.nodeID
        LoggingSystem.bootstrap(configured.logHandlerFactory, metadataProvider: .init { ["node": .string(nodeID)] })
        var logger = Logger(label: "chat-relay")
        logger.logLevel = configured.logLevel
        configured.relay.access = try await access.policy(environment: environment, logger: logger)
        let settings = configured
        // Every stream is a socket: the default soft limit (often 1024) would cap a node far below
        // --max-connections.
        // Every connection is a descriptor: the open-connection limit, the refusals past it (256)
        // and the node's own (Redis, the listener).
        let descriptorsNeeded = settings.relay.openConnectionLimit + 256 + 64
        if let files = FileLimit.raiseToHardLimit(), files < descriptorsNeeded {
            logger.warning(
                "the open-file limit is below what --max-open-connections needs; raise it (ulimit -n) or connections will fail",
                metadata: [
                    "limit": "\(files)", "needed": "\(descriptorsNeeded)", "max-open-connections": "\(settings.relay.openConnectionLimit)",
                ])
        }

        let node: RelayNode
        if let redis = settings.redis {
            node = RelayNode(configuration: settings.relay, logger: logger) { hub, metrics in
                RedisBroker(
                    deployment: redis, prefix: settings.redisPrefix, history: settings.relay.history, historyTTL: settings.relay.historyTTL,
                    routing: settings.redisChannels, linger: settings.roomLinger, minReplicasAck: settings.redisMinReplicasAck,
                    replicasAckTimeout: settings.redisReplicasAckTimeout, presenceTTL: settings.relay.presenceTTL, sink: hub,
                    metrics: metrics, logger: logger)
            }
        } else {
            node = RelayNode(configuration: settings.relay, logger: logger)
        }
        logger.info(
            "serving",
            metadata: [
                "address": "\(settings.host):\(settings.port)",
                "broker": "\(node.broker.kind)",
                "redis": "\(settings.redis.map { "\($0)" } ?? "-")",
                "redis-channels": "\(settings.redis == nil ? "-" : settings.redisChannels.rawValue)",
                "redis-min-replicas-ack": "\(settings.redis == nil ? "-" : "\(settings.redisMinReplicasAck)")",
                "history": "\(settings.relay.history)",
                "history-ttl": "\(settings.relay.historyTTL.map { "\($0)" } ?? "none")",
                "trusted-proxies": "\(settings.relay.trustedProxies.isEmpty ? "none" : settings.relay.trustedProxies.description)",
                "auth": "\(settings.relay.access.requiresTokens ? "jwt" : "none")",
            ])
        try await node.run(host: settings.host, port: settings.port)
        logger.info("stopped")
    }
}

import ArgumentParser
import ChatRelay
import ChatRelayHTTP
import Foundation
import Logging
import RedisClient

/// The node's settings: each flag, else its environment variable, else the default; checked once
/// at start-up so a mistake is reported before the node listens.
struct Settings {
    var host: String
    var port: Int
    var relay: RelayConfiguration
    /// Cluster mode's Redis (one, or a Redis Cluster), or nil for the embedded broker.
    var redis: RedisDeployment?
    var redisPrefix: String
    var redisChannels: ChannelRouting
    var roomLinger: Duration
    /// Replicas that must confirm a message before its 201, and for how long the node waits.
    var redisMinReplicasAck: Int
    var redisReplicasAckTimeout: Duration
    var logLevel: Logger.Level
    var logFormat: LogFormat

    init(command: ServeCommand, environment: [String: String]) throws {
        let fallback = FlagFallback(environment: environment)
        func value<T>(_ flag: T?, _ name: String, _ parse: (String) -> T?) throws -> T? {
            try fallback.value(flag, name, parse)
        }
        host = try value(command.host, "HOST", { $0 }) ?? "0.0.0.0"
        port = try value(command.port, "PORT", Int.init) ?? 8080
        guard (0...65535).contains(port) else { throw ValidationError("--port must be from 0 to 65535, got \(port).") }

        let forcedCluster =
            try command.redisCluster
            || value(nil as Bool?, "REDIS_CLUSTER") {
                ["1", "true", "yes"].contains($0.lowercased()) ? true : ["0", "false", "no"].contains($0.lowercased()) ? false : nil
            } ?? false
        if let text = try value(command.redisURL, "REDIS_URL", { $0 }) {
            do {
                redis = try RedisDeployment(text, cluster: forcedCluster)
            } catch {
                throw ValidationError("--redis-url: \(error)")
            }
        } else {
            guard !forcedCluster else { throw ValidationError("--redis-cluster needs --redis-url with the cluster's addresses.") }
            redis = nil
        }
        redisPrefix = try value(command.redisPrefix, "REDIS_PREFIX", { $0 }) ?? "chat-relay"
        guard !redisPrefix.isEmpty, !redisPrefix.contains(where: \.isWhitespace) else {
            throw ValidationError("--redis-prefix must be non-empty without spaces.")
        }
        let channelsText = try value(command.redisChannels, "REDIS_CHANNELS", { $0 }) ?? "room"
        guard let routing = ChannelRouting(rawValue: channelsText.lowercased()) else {
            throw ValidationError("--redis-channels must be room or shared; got \(channelsText.debugDescription).")
        }
        redisChannels = routing
        if redis?.isCluster == true {
            guard routing == .room else {
                throw ValidationError(
                    "--redis-channels shared does not work on a Redis Cluster: sharded pub/sub has a channel per room. Use room (the default)."
                )
            }
            guard !redisPrefix.contains("{"), !redisPrefix.contains("}") else {
                throw ValidationError("--redis-prefix must not contain { or } on a Redis Cluster: the room's hash tag does.")
            }
        }
        roomLinger =
            try value(command.roomLinger, "ROOM_LINGER", { $0 }).map { try Self.duration($0, flag: "--room-linger") } ?? .seconds(10)
        redisMinReplicasAck = try value(command.redisMinReplicasAck, "REDIS_MIN_REPLICAS_ACK", Int.init) ?? 0
        guard (0...16).contains(redisMinReplicasAck) else {
            throw ValidationError("--redis-min-replicas-ack must be from 0 to 16, got \(redisMinReplicasAck).")
        }
        redisReplicasAckTimeout =
            try value(command.redisReplicasAckTimeout, "REDIS_REPLICAS_ACK_TIMEOUT", { $0 }).map {
                try Self.duration($0, flag: "--redis-replicas-ack-timeout")
            } ?? .seconds(1)
        guard redisReplicasAckTimeout > .zero else { throw ValidationError("--redis-replicas-ack-timeout must be more than 0.") }

        let nodeID = try value(command.nodeID, "NODE_ID", { $0 }) ?? ProcessInfo.processInfo.hostName
        var relay = RelayConfiguration(nodeID: nodeID)
        relay.history = try value(command.history, "HISTORY", Int.init) ?? relay.history
        if let text = try value(command.historyMemory, "HISTORY_MEMORY", { $0 }) {
            relay.historyMemory = try Self.bytes(text, flag: "--history-memory")
        }
        if let seconds = try value(command.heartbeat, "HEARTBEAT", Double.init) {
            relay.heartbeat = try Self.seconds(seconds, flag: "--heartbeat")
        }
        relay.retryMilliseconds = try value(command.retryMilliseconds, "RETRY_MS", Int.init) ?? relay.retryMilliseconds
        relay.maxConnections = try value(command.maxConnections, "MAX_CONNECTIONS", Int.init) ?? relay.maxConnections
        if let ttl = try value(command.presenceTTL, "PRESENCE_TTL", { $0 }) {
            relay.presenceTTL = try Self.duration(ttl, flag: "--presence-ttl")
        }
        relay.presenceCap = try value(command.presenceCap, "PRESENCE_CAP", Int.init) ?? relay.presenceCap
        relay.maxStreamRooms = try value(command.maxStreamRooms, "MAX_STREAM_ROOMS", Int.init) ?? relay.maxStreamRooms
        relay.maxBodyBytes = try value(command.maxBodyBytes, "MAX_BODY_BYTES", Int.init) ?? relay.maxBodyBytes
        relay.maxMessageBytes = try value(command.maxMessageBytes, "MAX_MESSAGE_BYTES", Int.init) ?? relay.maxMessageBytes
        relay.rateLimit = try value(command.rateLimit, "RATE_LIMIT", Double.init) ?? relay.rateLimit
        relay.rateBurst = try value(command.rateBurst, "RATE_BURST", Double.init) ?? relay.rateBurst
        if command.trustForwardedFor || environment["TRUST_FORWARDED_FOR"].map({ !$0.isEmpty }) == true {
            // It trusted the first X-Forwarded-For hop, which the client writes itself.
            throw ValidationError(
                "--trust-forwarded-for (TRUST_FORWARDED_FOR) is gone: it believed an address the client can write. Give the proxies' addresses instead, e.g. --trusted-proxies 10.0.0.0/8 (TRUSTED_PROXIES)."
            )
        }
        if let list = try value(command.trustedProxies, "TRUSTED_PROXIES", { $0 }) {
            do {
                relay.trustedProxies = try TrustedProxies(parsing: list)
            } catch {
                throw ValidationError("--trusted-proxies: \(error).")
            }
        }
        relay.maxOpenConnections = try value(command.maxOpenConnections, "MAX_OPEN_CONNECTIONS", Int.init)
        if let text = try value(command.requestTimeout, "REQUEST_TIMEOUT", { $0 }) {
            relay.requestTimeout = try Self.duration(text, flag: "--request-timeout")
        }
        if let text = try value(command.idleTimeout, "IDLE_TIMEOUT", { $0 }) {
            relay.idleTimeout = try Self.duration(text, flag: "--idle-timeout")
        }
        if let text = try value(command.historyTTL, "HISTORY_TTL", { $0 }) {
            let ttl = try Self.duration(text, flag: "--history-ttl")
            relay.historyTTL = ttl == .zero ? nil : ttl
        }
        relay.subscriberBuffer = try value(command.subscriberBuffer, "SUBSCRIBER_BUFFER", Int.init) ?? relay.subscriberBuffer
        if let seconds = try value(command.drainTimeout, "DRAIN_TIMEOUT", Double.init) {
            relay.drainTimeout = try Self.seconds(seconds, flag: "--drain-timeout")
        }
        relay.allowOrigins = fallback.list(command.allowOrigin, "ALLOW_ORIGIN")

        guard (1...1_000_000).contains(relay.history) else { throw ValidationError("--history must be from 1 to 1000000.") }
        guard relay.heartbeat >= .milliseconds(100) else { throw ValidationError("--heartbeat must be at least 0.1 seconds.") }
        guard (0...86_400_000).contains(relay.retryMilliseconds) else { throw ValidationError("--retry-ms must be from 0 to 86400000.") }
        // Counts stay far from the integers' limits: the defaults add to them.
        guard (1...Self.largestCount).contains(relay.maxConnections) else {
            throw ValidationError("--max-connections must be from 1 to \(Self.largestCount).")
        }
        guard relay.presenceTTL >= .seconds(1) else { throw ValidationError("--presence-ttl must be at least 1 second.") }
        guard (1...Self.largestCount).contains(relay.presenceCap) else {
            throw ValidationError("--presence-cap must be from 1 to \(Self.largestCount).")
        }
        guard (1...StreamPosition.maximumRooms).contains(relay.maxStreamRooms) else {
            throw ValidationError("--max-stream-rooms must be from 1 to \(StreamPosition.maximumRooms).")
        }
        guard (1...Self.largestCount).contains(relay.openConnectionLimit) else {
            throw ValidationError("--max-open-connections must be from 1 to \(Self.largestCount).")
        }
        guard relay.requestTimeout > .zero, relay.idleTimeout > .zero else {
            throw ValidationError("--request-timeout and --idle-timeout must be more than 0 seconds.")
        }
        if let ttl = relay.historyTTL, ttl < .seconds(1) { throw ValidationError("--history-ttl must be 0 (never) or at least 1 second.") }
        // A POST's body is read into memory (a buffer of its declared length, up to the limit).
        guard (64...64 << 20).contains(relay.maxBodyBytes) else {
            throw ValidationError("--max-body-bytes must be from 64 to 67108864 (64 MiB).")
        }
        guard (1...1 << 20).contains(relay.maxMessageBytes) else {
            throw ValidationError("--max-message-bytes must be from 1 to 1048576 (1 MiB).")
        }
        guard relay.rateLimit >= 0, relay.rateBurst >= 1 else {
            throw ValidationError("--rate-limit must be 0 or more and --rate-burst at least 1.")
        }
        guard (1...Self.largestCount).contains(relay.subscriberBuffer) else {
            throw ValidationError("--subscriber-buffer must be from 1 to \(Self.largestCount).")
        }
        guard relay.drainTimeout > .zero else { throw ValidationError("--drain-timeout must be more than 0 seconds.") }
        var limits = relay.clientLimits
        // By default one client takes at most a quarter of the node's streams and connections,
        // however few the node allows: never every one.
        limits.streamsPerClient =
            try value(command.maxStreamsPerClient, "MAX_STREAMS_PER_CLIENT", Int.init)
            ?? min(limits.streamsPerClient, max(1, relay.maxConnections / 4))
        limits.streamsPerUser = try value(command.maxStreamsPerUser, "MAX_STREAMS_PER_USER", Int.init) ?? limits.streamsPerUser
        limits.connectionsPerClient =
            try value(command.maxConnectionsPerClient, "MAX_CONNECTIONS_PER_CLIENT", Int.init)
            ?? min(limits.connectionsPerClient, max(1, relay.openConnectionLimit / 4))
        limits.ticketsPerUser = try value(command.maxTicketsPerUser, "MAX_TICKETS_PER_USER", Int.init) ?? limits.ticketsPerUser
        limits.requestRate = try value(command.requestRateLimit, "REQUEST_RATE_LIMIT", Double.init) ?? limits.requestRate
        limits.requestBurst = try value(command.requestRateBurst, "REQUEST_RATE_BURST", Double.init) ?? limits.requestBurst
        for (flag, count) in [
            ("--max-streams-per-client", limits.streamsPerClient), ("--max-streams-per-user", limits.streamsPerUser),
            ("--max-connections-per-client", limits.connectionsPerClient), ("--max-tickets-per-user", limits.ticketsPerUser),
        ] where !(0...Self.largestCount).contains(count) {
            throw ValidationError("\(flag) must be from 0 (no limit) to \(Self.largestCount).")
        }
        guard limits.requestRate >= 0, limits.requestBurst >= 1 else {
            throw ValidationError("--request-rate-limit must be 0 or more and --request-rate-burst at least 1.")
        }
        relay.clientLimits = command.noClientLimits ? .none : limits
        self.relay = relay

        let levelText = try value(command.logLevel, "LOG_LEVEL", { $0 }) ?? "info"
        guard let level = Logger.Level(rawValue: levelText.lowercased()) else {
            throw ValidationError(
                "--log-level must be one of trace, debug, info, notice, warning, error, critical; got \(levelText.debugDescription).")
        }
        logLevel = level
        let formatText = try value(command.logFormat, "LOG_FORMAT", { $0 }) ?? "text"
        guard let format = LogFormat(rawValue: formatText.lowercased()) else {
            throw ValidationError("--log-format must be text or json; got \(formatText.debugDescription).")
        }
        logFormat = format
    }

    /// A duration flag: seconds (`30`, `0.5`), or a number with `s`, `m`, `h` or `d`.
    static func duration(_ text: String, flag: String) throws -> Duration {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var number = Substring(text.trimmingCharacters(in: .whitespaces))
        var scale = 1.0
        if let last = number.last, let unit = units[last] {
            scale = unit
            number = number.dropLast()
        }
        guard let value = Double(number), value >= 0, value * scale <= largestSeconds else {
            throw ValidationError(
                "\(flag) must be a number of seconds up to 10 years, or a number with s, m, h or d (30, 90s, 5m, 24h, 7d); got \(text.debugDescription)."
            )
        }
        return .milliseconds(Int64((value * scale * 1000).rounded()))
    }

    /// A size flag: bytes (`1048576`), or a number with KiB, MiB, GiB (or K, M, G: the same
    /// powers of 1024), at most 1 TiB.
    static func bytes(_ text: String, flag: String) throws -> Int {
        let units: [(String, Double)] = [
            ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("K", 1024), ("M", 1_048_576), ("G", 1_073_741_824),
        ]
        var number = text.trimmingCharacters(in: .whitespaces)
        var scale = 1.0
        for (unit, size) in units where number.hasSuffix(unit) {
            scale = size
            number = String(number.dropLast(unit.count)).trimmingCharacters(in: .whitespaces)
            break
        }
        guard let value = Double(number), value >= 0, value * scale <= 1_099_511_627_776 else {
            throw ValidationError(
                "\(flag) must be a number of bytes up to 1 TiB, or with KiB, MiB or GiB (512MiB, 2GiB); got \(text.debugDescription).")
        }
        return Int(value * scale)
    }

    /// A flag of seconds (`--heartbeat`, `--drain-timeout`), at most 10 years.
    static func seconds(_ value: Double, flag: String) throws -> Duration {
        guard value >= 0, value <= largestSeconds else {
            throw ValidationError("\(flag) must be from 0 to \(Int(largestSeconds)) seconds.")
        }
        return .milliseconds(Int64((value * 1000).rounded()))
    }

    /// The longest duration a flag takes: 10 years, far from where milliseconds overflow.
    static let largestSeconds = 10 * 366 * 86_400.0
    /// The largest count a flag takes (connections, bytes, messages).
    static let largestCount = 1 << 40

    /// Makes the log handler of the chosen format, at the chosen level, on standard error.
    var logHandlerFactory: @Sendable (String, Logger.MetadataProvider?) -> any LogHandler {
        let level = logLevel
        let format = logFormat
        return { label, provider in
            var handler: any LogHandler
            switch format {
            case .text: handler = TextLogHandler(label: label, metadataProvider: provider)
            case .json: handler = JSONLogHandler(label: label, metadataProvider: provider)
            }
            handler.logLevel = level
            return handler
        }
    }
}

enum LogFormat: String {
    case text
    case json
}

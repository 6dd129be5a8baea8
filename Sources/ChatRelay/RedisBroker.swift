import Logging
import Metrics
import NIOCore
import NIOPosix
import RedisClient
import Synchronization

/// The cluster broker: history in one Redis stream per room, live events on pub/sub, so a client
/// on any node sees every message of its room: on the room's own channel, which only the nodes
/// serving the room subscribe to (`ChannelRouting.room`, the default), or on one channel for all
/// rooms that every node subscribes to (`.shared`).
///
/// - Every event loop of the node has its own command connection, living on that loop: a request
///   handler (which runs on its connection's loop) reaches Redis and gets its reply without a
///   thread hop. Publish is one atomic script round trip (see `publishScript`); concurrent POSTs
///   on a loop share round trips. A 201 means Redis confirmed the append and the PUBLISH.
/// - Every event loop also has a subscriber connection. A room's channel is held by one of them,
///   the room's owner (by a hash of its name; with `.shared`, the first loop's holds the one
///   channel), which hands each event to the hub for every loop's streams: Redis sends an event
///   to a node once, however its streams are spread over the node's loops. A node's own messages
///   come back this way and only this way, so each stream gets each message once.
/// - After a lost subscription is restored, every room it owns with subscribers on this node is
///   read from the stream after their position, before any newer live message is handed over, so
///   subscribers that stayed connected lose nothing that got a 201.
/// - On a Redis Cluster (`RedisDeployment.cluster`) the keys of a room carry its name as a hash
///   tag, so they and its channel share one slot; each event loop sends a room's commands to the
///   master of that slot (`RedisClusterClient`), events go out with `SPUBLISH`, and each loop's
///   room channels are held on the masters that serve them (`ShardedChannels`), following the
///   slots when they move.
public final class RedisBroker: Broker {
    public let kind = "redis"
    public let keys: RedisKeys
    public let historyCapacity: Int
    public let routing: ChannelRouting
    /// How long a room's channel stays subscribed after the node's last subscriber of the room left.
    public let linger: Duration
    /// A room's keys expire this long after its last message; nil: never.
    public let historyTTL: Duration?
    public let deployment: RedisDeployment
    /// Replicas that must confirm a message before its `201` (`--redis-min-replicas-ack`), and
    /// how long the node waits for them.
    public let minReplicasAck: Int
    public let replicasAckTimeout: Duration
    private let waitTimeoutArgument: RedisArgument
    private let historyTTLArgument: RedisArgument
    let publishCommandArgument: RedisArgument
    /// A node that stops refreshing its mark in `presence-nodes` for this long is gone: its
    /// members leave every room (`--presence-ttl`).
    public let presenceTTL: Duration
    /// Every node's presence mark as last read (`readPresenceMarks`).
    let presenceMarks = Mutex(PresenceMarks())
    /// Whether this node marked itself alive since it started: it does before it stores entries.
    let presenceMarked = Atomic<Bool>(false)
    /// The command connections: per event loop, in the group's order.
    private let connections: Connections
    private let nextClient = Atomic<Int>(0)
    private let state: RedisReadiness
    /// On a cluster, whether every loop reaches every master and holds its channels, as last checked.
    private let clusterUp = Atomic<Bool>(false)
    private let scriptSHA = Mutex<String?>(nil)
    /// One per event loop, in the group's order, made by `run()`: standalone.
    private let subscribers = Mutex<[RedisSubscriber]>([])
    /// One per event loop, in the group's order, made by `run()`: on a cluster.
    private let shardedChannels = ShardedChannelsTable()

    /// The node's event loops, in the group's order: one command connection (or cluster client)
    /// and one room owner each.
    private let eventLoops: [any EventLoop]

    /// A connection to Redis per event loop, or a cluster client per event loop.
    private enum Connections {
        case standalone([RedisClient])
        case cluster([RedisClusterClient])
    }
    let sink: any LiveEventSink
    let metrics: RelayMetrics
    let logger: Logger

    /// - Parameters:
    ///   - history: messages kept per room (the stream's length).
    ///   - sink: the node's hub.
    ///   - eventLoopGroup: the loops the node serves requests on; each gets a command connection.
    ///   - historyTTL: how long a room's keys live after its last message (`--history-ttl`); nil: for ever.
    ///   - routing: a channel per room, or one for all (`--redis-channels`).
    ///   - linger: how long a room's channel outlives its last local subscriber (`--room-linger`).
    ///   - deployment: one Redis, or the seeds of a Redis Cluster (which takes only `.room` routing).
    ///   - presenceTTL: how long after its last refresh a node's members leave (`--presence-ttl`).
    ///   - minReplicasAck: with more than 0, a message is acknowledged only once this many replicas
    ///     of its Redis (or its cluster master) have it (`WAIT`), within `replicasAckTimeout`.
    public init(
        deployment: RedisDeployment, prefix: String, history: Int, historyTTL: Duration? = nil, routing: ChannelRouting = .room,
        linger: Duration = .seconds(10), minReplicasAck: Int = 0, replicasAckTimeout: Duration = .seconds(1),
        presenceTTL: Duration = .seconds(15), sink: any LiveEventSink,
        metrics: RelayMetrics, logger: Logger, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.presenceTTL = presenceTTL
        self.minReplicasAck = max(0, minReplicasAck)
        self.replicasAckTimeout = replicasAckTimeout
        self.waitTimeoutArgument = RedisArgument(Int(max(1, replicasAckTimeout.wholeMilliseconds)))
        precondition(!(deployment.isCluster && routing == .shared), "a Redis Cluster takes a channel per room")
        self.deployment = deployment
        self.keys = RedisKeys(prefix: prefix, hashTags: deployment.isCluster)
        self.publishCommandArgument = deployment.isCluster ? "SPUBLISH" : "PUBLISH"
        self.historyCapacity = max(1, history)
        self.routing = routing
        self.linger = linger
        self.historyTTL = historyTTL
        // As the script takes it: milliseconds, 0 for none; made once, sent with every publish.
        self.historyTTLArgument = RedisArgument(Int(historyTTL?.wholeMilliseconds ?? 0))
        self.sink = sink
        self.metrics = metrics
        self.logger = logger
        let loops = Array(eventLoopGroup.makeIterator())
        self.eventLoops = loops
        let state = RedisReadiness(connections: loops.count)
        self.state = state
        let onRoundTrip: @Sendable (Int, Int) -> Void = { requests, _ in
            metrics.redisRoundTrips.increment()
            metrics.redisRequests.increment(by: Int64(requests))
        }
        // A command connection is dropped when a reply takes longer than this: WAIT may take its
        // whole timeout.
        let commandTimeout = max(.seconds(2), replicasAckTimeout + .seconds(1))
        switch deployment {
        case .standalone(let url):
            var configuration = RedisClient.Configuration(url: url)
            configuration.commandTimeout = commandTimeout
            self.connections = .standalone(
                loops.map { loop in
                    RedisClient(
                        configuration: configuration, eventLoop: loop,
                        onStateChange: { connected, error in
                            if state.commandConnection(of: loop, up: connected, metrics) {
                                logger.info("redis connected", metadata: ["url": "\(url)"])
                            } else if !connected, let error {
                                logger.warning("redis command connection down", metadata: ["error": "\(error)"])
                            }
                        }, onRoundTrip: onRoundTrip)
                })
        case .cluster(let seeds):
            // The slot map's changes reach the loop's channels once `run()` made them.
            let channels = shardedChannels
            var configuration = RedisClusterClient.Configuration(seeds: seeds)
            configuration.commandTimeout = commandTimeout
            self.connections = .cluster(
                loops.enumerated().map { index, loop in
                    RedisClusterClient(
                        configuration: configuration, eventLoop: loop,
                        onMapChange: { map in
                            logger.info("redis cluster slot map", metadata: ["masters": "\(map.masters.map(\.description))"])
                            channels[index]?.mapChanged(map)
                        },
                        onRoundTrip: onRoundTrip,
                        onRedirect: { kind in
                            (kind == .moved ? metrics.redisMovedRedirects : metrics.redisAskRedirects).increment()
                        },
                        onRefresh: { metrics.redisSlotMapRefreshes.increment() })
                })
        }
    }

    /// Records whether the cluster is reachable (`watchCluster`).
    func setClusterUp(_ up: Bool) {
        clusterUp.store(up, ordering: .relaxed)
        metrics.brokerUp.record(up ? 1 : 0)
    }

    /// Standalone: up when every command connection and every subscription are. On a cluster: when
    /// every loop reaches every master and every subscriber of its rooms' channels is subscribed.
    public var isReady: Bool { deployment.isCluster ? clusterUp.load(ordering: .relaxed) : state.isUp }

    /// Runs the command connections and the subscribers until cancelled.
    public func run() async throws {
        switch (connections, deployment) {
        case (.standalone(let clients), .standalone(let url)):
            // Made here, not in init: their callbacks need `self`.
            let subscribers = clients.indices.map { makeSubscriber(index: $0, url: url) }
            self.subscribers.withLock { $0 = subscribers }
            for client in clients { client.start() }
            for subscriber in subscribers { subscriber.start() }
            await keepPresenceAlive()
            for subscriber in subscribers { subscriber.stop() }
            for client in clients { client.stop() }
        case (.cluster(let clients), .cluster(let seeds)):
            let channels = clients.enumerated().map { index, client in
                ShardedChannels(index: index, client: client) { [self] master in
                    makeShardSubscriber(index: index, url: master.url(credentialsOf: seeds[0]), master: master)
                }
            }
            shardedChannels.set(channels)
            async let alive: Void = keepPresenceAlive()
            await watchCluster(channels)
            await alive
            for owned in channels { owned.stop() }
            for client in clients { client.stop() }
        default:
            preconditionFailure("the connections follow the deployment")
        }
    }

    /// The subscriber of event loop `index`: it holds the channels of the rooms it owns.
    private func makeSubscriber(index: Int, url: RedisURL) -> RedisSubscriber {
        let eventLoop = eventLoops[index]
        var configuration = RedisSubscriber.Configuration(url: url, channels: routing == .shared && index == 0 ? [keys.channel] : [])
        configuration.linger = linger
        return RedisSubscriber(configuration: configuration, eventLoop: eventLoop) { [self] reconnected in
            // Once per node: when the last of its subscriptions is up (again).
            if state.subscription(of: eventLoop, up: true, metrics) {
                logger.info("redis subscribed", metadata: ["routing": "\(routing)", "reconnected": "\(reconnected)"])
                if reconnected { metrics.brokerReconnects.increment() }
            }
            // Live messages are held until the gap is filled, so they come after it.
            return await fillGaps { [self] room in owner(of: room) == index } ? .proceed : .resubscribe
        } onMessage: { [self] channel, payload in
            received(payload, on: channel)
        } onDown: { [self] error in
            state.subscription(of: eventLoop, up: false, metrics)
            logger.warning("redis subscription down", metadata: ["error": "\(error)"])
        } stillWanted: { [self] channel in
            stillWanted(channel)
        } onListening: { [metrics] delta in
            metrics.redisRoomChannels.increment(by: Double(delta))
        }
    }

    /// On a cluster, the sharded subscriber of event loop `index` on `master`: it holds the
    /// channels of the rooms the loop owns whose slots the master serves.
    private func makeShardSubscriber(index: Int, url: RedisURL, master: RedisSlotMap.Node) -> RedisSubscriber {
        var configuration = RedisSubscriber.Configuration(url: url, channels: [])
        configuration.linger = linger
        configuration.sharded = true
        // Set once the subscriber exists: its gap fill asks it which channels it holds.
        let made = Mutex<RedisSubscriber?>(nil)
        let subscriber = RedisSubscriber(configuration: configuration, eventLoop: eventLoops[index]) { [self] reconnected in
            logger.info("redis shard subscribed", metadata: ["shard": "\(master)", "reconnected": "\(reconnected)"])
            guard let subscriber = made.withLock({ $0 }), let held = try? await subscriber.listening().get() else { return .proceed }
            return await fillGaps { [keys] room in held.contains(keys.channel(room)) } ? .proceed : .resubscribe
        } onMessage: { [self] channel, payload in
            received(payload, on: channel)
        } onDown: { [self] error in
            logger.warning("redis shard subscription down", metadata: ["shard": "\(master)", "error": "\(error)"])
        } stillWanted: { [self] channel in
            stillWanted(channel)
        } onListening: { [metrics] delta in
            metrics.redisRoomChannels.increment(by: Double(delta))
        } onMoved: { [self] channel in
            shardedChannels[index]?.moved(channel, from: master)
        }
        made.withLock { $0 = subscriber }
        return subscriber
    }

    /// A live event from Redis, for this node's streams.
    private func received(_ payload: [UInt8], on channel: [UInt8]) {
        metrics.redisEventsReceived.increment()
        switch Self.parseChannelEvent(payload) {
        case .event(let message):
            sink.deliver(message)
        case .presence(let entry):
            sink.presence.apply(entry)
        case nil:
            logger.warning(
                "ignored a malformed event",
                metadata: ["channel": "\(String(decoding: channel, as: UTF8.self))", "bytes": "\(payload.count)"])
        }
    }

    /// Whether a room channel still has streams of its room on this node.
    private func stillWanted(_ channel: String) -> Bool {
        guard let room = keys.room(ofChannel: channel) else { return false }
        return sink.hasSubscribers(room: room)
    }

    /// The event loop (index) whose subscriber holds `room`'s channel: the same for the node's
    /// whole life, spread evenly (FNV-1a of the name); with `.shared`, the first.
    func owner(of room: RoomName) -> Int {
        let loops = eventLoops.count
        guard routing == .room, loops > 1 else { return 0 }
        var hash: UInt32 = 2_166_136_261
        for byte in room.value.utf8 {
            hash = (hash ^ UInt32(byte)) &* 16_777_619
        }
        return Int(hash % UInt32(loops))
    }

    /// With `.room`: subscribes the room's owner to the room's channel, if it is not yet, and
    /// returns once Redis confirmed it, so that every event published from then on reaches this
    /// node; the caller reads the room's history after this. Returns at once when the subscription
    /// is down: after it comes back, the gap fill reads every room it owns with subscribers here.
    public func listen(room: RoomName) async throws {
        guard routing == .room else { return }
        let owner = owner(of: room)
        if deployment.isCluster {
            guard let owned = shardedChannels[owner] else {
                throw BrokerError.unavailable("the node is not connected to the Redis Cluster yet")
            }
            do {
                try await owned.listen(keys.channel(room), slot: keys.slot(room))
            } catch {
                throw BrokerError.unavailable("\(error)")
            }
            return
        }
        guard let subscriber = subscribers.withLock({ $0.indices.contains(owner) ? $0[owner] : nil }) else {
            // `run()` has not made the subscribers yet (the node is starting): a stream opened now
            // would hold no channel.
            throw BrokerError.unavailable("the node is not subscribed to Redis yet")
        }
        do {
            try await subscriber.listen(keys.channel(room)).get()
        } catch {
            throw BrokerError.unavailable("\(error)")
        }
    }

    // MARK: Publish

    public func publish(_ draft: MessageDraft, idempotency: Idempotency?) async throws -> PublishOutcome {
        var tail = ByteBuffer()
        let timeMs = Timestamp.nowMilliseconds()
        Message.writeJSONTail(room: draft.room, user: draft.user, name: draft.name, text: draft.text, timeMs: timeMs, into: &tail)
        let tailBytes = Array(tail.readableBytesView)
        var keysAndArguments: [RedisArgument] = [
            idempotency == nil ? "2" : "3",
            RedisArgument(keys.stream(draft.room)),
            RedisArgument(keys.trimmed(draft.room)),
        ]
        keysAndArguments.reserveCapacity(14)
        if let idempotency { keysAndArguments.append(RedisArgument(keys.idempotency(draft.room, idempotency.key))) }
        keysAndArguments += [
            RedisArgument(historyCapacity),
            RedisArgument(Self.trimSlack(historyCapacity)),
            RedisArgument(routing == .room ? keys.channel(draft.room) : keys.channel),
            RedisArgument(tailBytes),
            RedisArgument(draft.room.value),
            RedisArgument(Int(IdempotencyCache.window / 1000)),
            historyTTLArgument,
            Self.jsonBeforeIDArgument,
            publishCommandArgument,
            RedisArgument(IdempotencyRecord.redisTail(timeMs: timeMs, fingerprint: idempotency?.fingerprint ?? 0)),
        ]
        let slot = keys.slot(draft.room)
        var replies = try await runScript(keysAndArguments, slot: slot)
        if case .error(let message) = replies[0], message.hasPrefix("NOSCRIPT") {
            // Redis restarted and lost its script cache, or (on a cluster) this master has not
            // seen the script yet: send the script itself, which caches it there.
            replies = try await pipeline([["EVAL", RedisArgument(Self.publishScript)] + keysAndArguments] + waitForReplicas, slot: slot)
        }
        if minReplicasAck > 0 {
            // WAIT answers how many replicas have every write this connection sent so far, ours
            // included (a repeated idempotency key's too: it was stored by an earlier write).
            let acknowledged = Int(replies.count == 2 ? replies[1].integer ?? 0 : 0)
            guard acknowledged >= minReplicasAck else {
                throw BrokerError.unreplicated(acknowledged: acknowledged, required: minReplicasAck)
            }
        }
        let reply = replies[0]
        guard let parts = reply.array, parts.count == 2, let flag = parts[0].integer, let value = parts[1].bytes else {
            throw BrokerError.unavailable("unexpected reply to publish: \(reply)")
        }
        if flag == 1 {
            guard let id = MessageID(String(decoding: value, as: UTF8.self)) else {
                throw BrokerError.unavailable("Redis returned the id \(String(decoding: value, as: UTF8.self).debugDescription)")
            }
            return .created(StoredMessage(id: id, room: draft.room, json: Message.json(id: id.description, tail: tailBytes)))
        }
        guard let idempotency, let record = IdempotencyRecord(redis: value) else {
            throw BrokerError.unavailable("malformed idempotency record")
        }
        return record.outcome(for: draft, idempotency)
    }

    /// Publishes `<room> <kind> <json>` on the room's channel, as a message's event goes.
    public func signal(_ signal: StoredMessage) async throws {
        var payload = Array(signal.room.value.utf8)
        payload.append(UInt8(ascii: " "))
        payload += signal.kind.name.utf8
        payload.append(UInt8(ascii: " "))
        payload += signal.json.readableBytesView
        let channel = routing == .room ? keys.channel(signal.room) : keys.channel
        _ = try await call([publishCommandArgument, RedisArgument(channel), RedisArgument(payload)], slot: keys.slot(signal.room))
    }

    /// EVALSHA with the script's hash (and `WAIT`, with `minReplicasAck`, in the same round
    /// trip), loading the script first (on the master of `slot`) if this node has not learnt its
    /// hash yet; the script's reply first.
    private func runScript(_ keysAndArguments: [RedisArgument], slot: Int) async throws -> [RedisReply] {
        var sha = scriptSHA.withLock { $0 }
        if sha == nil {
            let loaded = try await call(["SCRIPT", "LOAD", RedisArgument(Self.publishScript)], slot: slot)
            guard let text = loaded.string else { throw BrokerError.unavailable("SCRIPT LOAD failed: \(loaded)") }
            scriptSHA.withLock { $0 = text }
            sha = text
        }
        return try await pipeline([["EVALSHA", RedisArgument(sha!)] + keysAndArguments] + waitForReplicas, slot: slot)
    }

    /// `WAIT <minReplicasAck> <timeout>` after the publish script, or nothing.
    private var waitForReplicas: [RedisCommand] {
        minReplicasAck > 0 ? [["WAIT", RedisArgument(minReplicasAck), waitTimeoutArgument]] : []
    }

    /// What a message's JSON holds before its id, as the script takes it.
    private static let jsonBeforeIDArgument = RedisArgument(Message.jsonBeforeID)

    /// How far past `maxlen` a stream may grow before it is trimmed back.
    static func trimSlack(_ maxlen: Int) -> Int { max(1, min(100, maxlen / 10)) }

    // MARK: Reading

    public func latestID(room: RoomName) async throws -> MessageID? {
        let reply = try await call(["XREVRANGE", RedisArgument(keys.stream(room)), "+", "-", "COUNT", "1"], slot: keys.slot(room))
        return try Self.entries(reply, room: room).last?.id
    }

    public func replay(room: RoomName, after id: MessageID, limit: Int) async throws -> Replay {
        let replies = try await pipeline(
            [
                [
                    "XRANGE", RedisArgument(keys.stream(room)), RedisArgument("(" + id.description), "+", "COUNT",
                    RedisArgument(max(1, limit)),
                ],
                ["GET", RedisArgument(keys.trimmed(room))],
                ["EXISTS", RedisArgument(keys.stream(room))],
            ], slot: keys.slot(room))
        let messages = try Self.entries(replies[0], room: room)
        let lastTrimmed = replies[1].string.flatMap { MessageID($0) }
        // A message after `id` is gone exactly when `id` is older than the marker (the newest
        // trimmed id, or the first id of a stream that began after a loss); then the replay starts
        // at the oldest retained message, the first of `messages`. A room that does not exist
        // expired (or Redis lost it): a client with an id from it may have missed something.
        let exists = replies[2].integer.map { $0 > 0 } ?? true
        let lost = exists ? (lastTrimmed.map { id < $0 } ?? false) : true
        return Replay(oldestRetained: messages.first?.id, messagesLost: lost, messages: messages)
    }

    public func history(room: RoomName, after id: MessageID?, limit: Int) async throws -> [StoredMessage] {
        let stream = RedisArgument(keys.stream(room))
        let slot = keys.slot(room)
        if let id {
            return try Self.entries(
                try await call(["XRANGE", stream, RedisArgument("(" + id.description), "+", "COUNT", RedisArgument(limit)], slot: slot),
                room: room)
        }
        return try Self.entries(try await call(["XREVRANGE", stream, "+", "-", "COUNT", RedisArgument(limit)], slot: slot), room: room)
            .reversed()
    }

    public func storeTicket(_ ticket: String, value: [UInt8], ttl: Duration) async throws {
        let key = keys.ticket(ticket)
        let reply = try await call(
            ["SET", RedisArgument(key), RedisArgument(value), "PX", RedisArgument(Int(max(1, ttl.wholeMilliseconds))), "NX"],
            slot: RedisKeySlot.of(key))
        guard reply.string == "OK" else { throw BrokerError.unavailable("a ticket with this id exists") }
    }

    public func redeemTicket(_ ticket: String) async throws -> [UInt8]? {
        // GETDEL (Redis 6.2): read and remove in one step, so only one node ever gets the value.
        let key = keys.ticket(ticket)
        return try await call(["GETDEL", RedisArgument(key)], slot: RedisKeySlot.of(key)).bytes
    }

    // MARK: Helpers

    func call(_ command: RedisCommand, slot: Int) async throws -> RedisReply {
        try await pipeline([command], slot: slot)[0]
    }

    /// The index of the caller's event loop, so that the request and its reply stay on it; from
    /// anywhere else, the loops in turn.
    private var loopIndex: Int {
        let loops = eventLoops
        if let current = MultiThreadedEventLoopGroup.currentEventLoop, let own = loops.firstIndex(where: { $0 === current }) {
            return own
        }
        return nextClient.add(1, ordering: .relaxed).oldValue % loops.count
    }

    /// Sends `commands`, whose keys are all in `slot`, on the caller's loop: to the one Redis, or
    /// to the master serving the slot.
    func pipeline(_ commands: [RedisCommand], slot: Int) async throws -> [RedisReply] {
        let replies: [RedisReply]
        do {
            switch connections {
            case .standalone(let clients): replies = try await clients[loopIndex].pipeline(commands)
            case .cluster(let clients): replies = try await clients[loopIndex].pipeline(commands, slot: slot)
            }
        } catch {
            throw BrokerError.unavailable("\(error)")
        }
        for reply in replies {
            guard case .error(let message) = reply, !message.hasPrefix("NOSCRIPT") else { continue }
            // At its maxmemory (with noeviction) Redis refuses every write before making it.
            if message.hasPrefix("OOM") { throw BrokerError.full(message) }
            throw BrokerError.unavailable("Redis refused a command: \(message)")
        }
        return replies
    }
}

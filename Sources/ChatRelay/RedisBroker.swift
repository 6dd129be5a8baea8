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
public final class RedisBroker: Broker {
    public let kind = "redis"
    public let keys: RedisKeys
    public let historyCapacity: Int
    public let routing: ChannelRouting
    /// How long a room's channel stays subscribed after the node's last subscriber of the room left.
    public let linger: Duration
    /// A room's keys expire this long after its last message; nil: never.
    public let historyTTL: Duration?
    private let historyTTLArgument: RedisArgument
    private let url: RedisURL
    /// One per event loop, in the group's order.
    private let clients: [RedisClient]
    private let nextClient = Atomic<Int>(0)
    private let state: RedisReadiness
    private let scriptSHA = Mutex<String?>(nil)
    /// One per event loop, in the group's order, made by `run()`.
    private let subscribers = Mutex<[RedisSubscriber]>([])
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
    public init(
        url: RedisURL, prefix: String, history: Int, historyTTL: Duration? = nil, routing: ChannelRouting = .room,
        linger: Duration = .seconds(10), sink: any LiveEventSink, metrics: RelayMetrics, logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.url = url
        self.keys = RedisKeys(prefix: prefix)
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
        let state = RedisReadiness(connections: loops.count)
        self.state = state
        self.clients = loops.map { loop in
            RedisClient(configuration: .init(url: url), eventLoop: loop) { connected, error in
                if state.commandConnection(of: loop, up: connected, metrics) {
                    logger.info("redis connected", metadata: ["url": "\(url)"])
                } else if !connected, let error {
                    logger.warning("redis command connection down", metadata: ["error": "\(error)"])
                }
            } onRoundTrip: { requests, _ in
                metrics.redisRoundTrips.increment()
                metrics.redisRequests.increment(by: Int64(requests))
            }
        }
    }

    /// Up when every command connection and every subscription are.
    public var isReady: Bool { state.isUp }

    /// Runs the command connections and the subscriber until cancelled.
    public func run() async throws {
        // Made here, not in init: their callbacks need `self`.
        let subscribers = clients.indices.map { makeSubscriber(index: $0) }
        self.subscribers.withLock { $0 = subscribers }
        for client in clients { client.start() }
        for subscriber in subscribers { subscriber.start() }
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
        for subscriber in subscribers { subscriber.stop() }
        for client in clients { client.stop() }
    }

    /// The subscriber of event loop `index`: it holds the channels of the rooms it owns.
    private func makeSubscriber(index: Int) -> RedisSubscriber {
        let eventLoop = clients[index].eventLoop
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
            metrics.redisEventsReceived.increment()
            if let message = Self.parseEvent(payload) {
                sink.deliver(message)
            } else {
                logger.warning(
                    "ignored a malformed event",
                    metadata: ["channel": "\(String(decoding: channel, as: UTF8.self))", "bytes": "\(payload.count)"])
            }
        } onDown: { [self] error in
            state.subscription(of: eventLoop, up: false, metrics)
            logger.warning("redis subscription down", metadata: ["error": "\(error)"])
        } stillWanted: { [keys, sink] channel in
            guard let room = keys.room(ofChannel: channel) else { return false }
            return sink.hasSubscribers(room: room)
        } onListening: { [metrics] delta in
            metrics.redisRoomChannels.increment(by: Double(delta))
        }
    }

    /// The event loop (index) whose subscriber holds `room`'s channel: the same for the node's
    /// whole life, spread evenly (FNV-1a of the name); with `.shared`, the first.
    func owner(of room: RoomName) -> Int {
        guard routing == .room, clients.count > 1 else { return 0 }
        var hash: UInt32 = 2_166_136_261
        for byte in room.value.utf8 {
            hash = (hash ^ UInt32(byte)) &* 16_777_619
        }
        return Int(hash % UInt32(clients.count))
    }

    /// With `.room`: subscribes the room's owner to the room's channel, if it is not yet, and
    /// returns once Redis confirmed it, so that every event published from then on reaches this
    /// node; the caller reads the room's history after this. Returns at once when the subscription
    /// is down: after it comes back, the gap fill reads every room it owns with subscribers here.
    public func listen(room: RoomName) async throws {
        guard routing == .room else { return }
        let owner = owner(of: room)
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

    public func publish(_ draft: MessageDraft, idempotencyKey: String?) async throws -> PublishOutcome {
        var tail = ByteBuffer()
        Message.writeJSONTail(
            room: draft.room, user: draft.user, name: draft.name, text: draft.text, timeMs: Timestamp.nowMilliseconds(), into: &tail)
        let tailBytes = Array(tail.readableBytesView)
        let keysAndArguments: [RedisArgument] = [
            "3",
            RedisArgument(keys.stream(draft.room)),
            RedisArgument(keys.trimmed(draft.room)),
            RedisArgument(idempotencyKey.map { keys.idempotency(draft.room, $0) } ?? ""),
            RedisArgument(historyCapacity),
            RedisArgument(Self.trimSlack(historyCapacity)),
            RedisArgument(routing == .room ? keys.channel(draft.room) : keys.channel),
            RedisArgument(tailBytes),
            RedisArgument(draft.room.value),
            RedisArgument(Int(IdempotencyCache.window / 1000)),
            historyTTLArgument,
            Self.jsonBeforeIDArgument,
        ]
        var reply = try await runScript(keysAndArguments)
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
            // Redis restarted and lost its script cache: send the script itself once.
            scriptSHA.withLock { $0 = nil }
            reply = try await call(["EVAL", RedisArgument(Self.publishScript)] + keysAndArguments)
        }
        guard let parts = reply.array, parts.count == 2, let flag = parts[0].integer, let value = parts[1].bytes else {
            throw BrokerError.unavailable("unexpected reply to publish: \(reply)")
        }
        if flag == 1 {
            guard let id = MessageID(String(decoding: value, as: UTF8.self)) else {
                throw BrokerError.unavailable("Redis returned the id \(String(decoding: value, as: UTF8.self).debugDescription)")
            }
            return .created(StoredMessage(id: id, room: draft.room, json: Message.json(id: id.description, tail: tailBytes)))
        }
        // "<id> <json>"
        guard let space = value.firstIndex(of: UInt8(ascii: " ")),
            let id = MessageID(String(decoding: value[..<space], as: UTF8.self))
        else { throw BrokerError.unavailable("malformed idempotency record") }
        return .duplicate(StoredMessage(id: id, room: draft.room, json: ByteBuffer(bytes: value[(space + 1)...])))
    }

    /// EVALSHA with the script's hash, loading the script first if this node has not yet.
    private func runScript(_ keysAndArguments: [RedisArgument]) async throws -> RedisReply {
        var sha = scriptSHA.withLock { $0 }
        if sha == nil {
            let loaded = try await call(["SCRIPT", "LOAD", RedisArgument(Self.publishScript)])
            guard let text = loaded.string else { throw BrokerError.unavailable("SCRIPT LOAD failed: \(loaded)") }
            scriptSHA.withLock { $0 = text }
            sha = text
        }
        return try await call(["EVALSHA", RedisArgument(sha!)] + keysAndArguments)
    }

    /// What a message's JSON holds before its id, as the script takes it.
    private static let jsonBeforeIDArgument = RedisArgument(Message.jsonBeforeID)

    /// How far past `maxlen` a stream may grow before it is trimmed back.
    static func trimSlack(_ maxlen: Int) -> Int { max(1, min(100, maxlen / 10)) }

    // MARK: Reading

    public func latestID(room: RoomName) async throws -> MessageID? {
        let reply = try await call(["XREVRANGE", RedisArgument(keys.stream(room)), "+", "-", "COUNT", "1"])
        return try Self.entries(reply, room: room).last?.id
    }

    public func replay(room: RoomName, after id: MessageID) async throws -> Replay {
        let replies = try await pipeline([
            [
                "XRANGE", RedisArgument(keys.stream(room)), RedisArgument("(" + id.description), "+", "COUNT",
                RedisArgument(historyCapacity + Self.trimSlack(historyCapacity)),
            ],
            ["GET", RedisArgument(keys.trimmed(room))],
            ["EXISTS", RedisArgument(keys.stream(room))],
        ])
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
        if let id {
            return try Self.entries(
                try await call(["XRANGE", stream, RedisArgument("(" + id.description), "+", "COUNT", RedisArgument(limit)]), room: room)
        }
        return try Self.entries(try await call(["XREVRANGE", stream, "+", "-", "COUNT", RedisArgument(limit)]), room: room).reversed()
    }

    public func storeTicket(_ ticket: String, value: [UInt8], ttl: Duration) async throws {
        let reply = try await call([
            "SET", RedisArgument(keys.ticket(ticket)), RedisArgument(value), "PX", RedisArgument(Int(max(1, ttl.wholeMilliseconds))), "NX",
        ])
        guard reply.string == "OK" else { throw BrokerError.unavailable("a ticket with this id exists") }
    }

    public func redeemTicket(_ ticket: String) async throws -> [UInt8]? {
        // GETDEL (Redis 6.2): read and remove in one step, so only one node ever gets the value.
        try await call(["GETDEL", RedisArgument(keys.ticket(ticket))]).bytes
    }

    // MARK: Helpers

    private func call(_ command: RedisCommand) async throws -> RedisReply {
        try await pipeline([command])[0]
    }

    /// The command connection of the caller's event loop, so that the request and its reply stay
    /// on it; from anywhere else, the connections in turn.
    private var client: RedisClient {
        if let current = MultiThreadedEventLoopGroup.currentEventLoop,
            let own = clients.first(where: { $0.eventLoop === current })
        {
            return own
        }
        return clients[nextClient.add(1, ordering: .relaxed).oldValue % clients.count]
    }

    private func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        let replies: [RedisReply]
        do {
            replies = try await client.pipeline(commands)
        } catch {
            throw BrokerError.unavailable("\(error)")
        }
        for reply in replies {
            if case .error(let message) = reply, !message.hasPrefix("NOSCRIPT") {
                throw BrokerError.unavailable("Redis refused a command: \(message)")
            }
        }
        return replies
    }
}

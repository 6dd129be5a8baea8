import Foundation
import Logging
import Metrics
import NIOCore
import RedisClient
import Synchronization

/// The cluster broker: history in one Redis stream per room, live events on one pub/sub channel
/// that every node subscribes to, so a client on any node sees every message of its room.
///
/// - Publish is one atomic script round trip (see `publishScript`); concurrent POSTs share round
///   trips through the client's pipelining. A 201 means Redis confirmed the append and the PUBLISH.
/// - One subscriber connection per node feeds the node's hub; a node's own messages come back
///   through it and only through it, so each is delivered once.
/// - After a lost subscription is restored, every room with local subscribers is read from the
///   stream after its subscribers' position, before any newer live message is handed over, so
///   subscribers that stayed connected lose nothing that got a 201.
public final class RedisBroker: Broker {
    public let kind = "redis"
    public let keys: RedisKeys
    public let historyCapacity: Int
    private let url: RedisURL
    private let client: RedisClient
    private let state = ConnectionState()
    private let scriptSHA = Mutex<String?>(nil)
    private let sink: any LiveEventSink
    private let metrics: RelayMetrics
    private let logger: Logger

    /// - Parameters:
    ///   - history: messages kept per room (the stream's length).
    ///   - sink: the node's hub.
    public init(url: RedisURL, prefix: String, history: Int, sink: any LiveEventSink, metrics: RelayMetrics, logger: Logger) {
        self.url = url
        self.keys = RedisKeys(prefix: prefix)
        self.historyCapacity = max(1, history)
        self.sink = sink
        self.metrics = metrics
        self.logger = logger
        let state = self.state
        self.client = RedisClient(configuration: .init(url: url)) { connected, error in
            state.update(metrics) { $0.command = connected }
            if connected {
                logger.info("redis connected", metadata: ["url": "\(url)"])
            } else if let error {
                logger.warning("redis command connection down", metadata: ["error": "\(error)"])
            }
        } onRoundTrip: { requests, _ in
            metrics.redisRoundTrips.increment()
            metrics.redisRequests.increment(by: Int64(requests))
        }
    }

    /// Up when both the command connection and the subscription are.
    public var isReady: Bool { state.isUp }

    /// Runs the command connection and the subscriber, each on its own thread, until cancelled.
    public func run() async throws {
        let subscriber = RedisSubscriber(configuration: .init(url: url, channels: [keys.channel])) { [self] event in
            handle(event)
        }
        client.start()
        subscriber.start()
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
        // stop() joins the threads (up to a poll interval): not on a cooperative thread.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread { [client] in
                subscriber.stop()
                client.stop()
                continuation.resume()
            }.start()
        }
    }

    /// The subscriber's events, on its thread.
    private func handle(_ event: RedisSubscriber.Event) -> RedisSubscriber.Disposition {
        switch event {
        case .subscribed(let reconnected):
            state.update(metrics) { $0.subscriber = true }
            if reconnected { metrics.brokerReconnects.increment() }
            logger.info("redis subscribed", metadata: ["channel": "\(keys.channel)", "reconnected": "\(reconnected)"])
            // Live messages wait in the socket until the gap is filled, so they come after it.
            return fillGaps() ? .proceed : .resubscribe
        case .message(_, let payload):
            if let message = Self.parseEvent(payload) {
                sink.deliver(message)
            } else {
                logger.warning("ignored a malformed event", metadata: ["channel": "\(keys.channel)", "bytes": "\(payload.count)"])
            }
            return .proceed
        case .down(let error):
            state.update(metrics) { $0.subscriber = false }
            logger.warning("redis subscription down", metadata: ["error": "\(error)"])
            return .proceed
        }
    }

    // MARK: Publish

    public func publish(_ draft: MessageDraft, idempotencyKey: String?) async throws -> PublishOutcome {
        var tail = ByteBuffer()
        Message.writeJSONTail(room: draft.room, user: draft.user, text: draft.text, timeMs: Timestamp.nowMilliseconds(), into: &tail)
        let tailBytes = Array(tail.readableBytesView)
        let keysAndArguments: [RedisArgument] = [
            "3",
            RedisArgument(keys.stream(draft.room)),
            RedisArgument(keys.trimmed(draft.room)),
            RedisArgument(idempotencyKey.map { keys.idempotency(draft.room, $0) } ?? ""),
            RedisArgument(historyCapacity),
            RedisArgument(Self.trimSlack(historyCapacity)),
            RedisArgument(keys.channel),
            RedisArgument(tailBytes),
            RedisArgument(draft.room.value),
            RedisArgument(Int(IdempotencyCache.window / 1000)),
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
            return .created(StoredMessage(id: id, room: draft.room, json: Self.json(id: id.description, tail: tailBytes)))
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

    /// How far past `maxlen` a stream may grow before it is trimmed back.
    static func trimSlack(_ maxlen: Int) -> Int { max(1, min(100, maxlen / 10)) }

    // MARK: Reading

    public func latestID(room: RoomName) async throws -> MessageID? {
        let reply = try await call(["XREVRANGE", RedisArgument(keys.stream(room)), "+", "-", "COUNT", "1"])
        return try Self.entries(reply, room: room).last?.id
    }

    public func replay(room: RoomName, after id: MessageID) async throws -> Replay {
        let replies = try await pipeline([
            ["XRANGE", RedisArgument(keys.stream(room)), RedisArgument("(" + id.description), "+", "COUNT", RedisArgument(historyCapacity + Self.trimSlack(historyCapacity))],
            ["GET", RedisArgument(keys.trimmed(room))],
        ])
        let messages = try Self.entries(replies[0], room: room)
        let lastTrimmed = replies[1].string.flatMap { MessageID($0) }
        // A message after `id` was trimmed exactly when `id` is older than the newest trimmed one;
        // then the replay starts at the oldest retained message, the first of `messages`.
        let lost = lastTrimmed.map { id < $0 } ?? false
        return Replay(oldestRetained: messages.first?.id, messagesLost: lost, messages: messages)
    }

    public func history(room: RoomName, after id: MessageID?, limit: Int) async throws -> [StoredMessage] {
        let stream = RedisArgument(keys.stream(room))
        if let id {
            return try Self.entries(try await call(["XRANGE", stream, RedisArgument("(" + id.description), "+", "COUNT", RedisArgument(limit)]), room: room)
        }
        return try Self.entries(try await call(["XREVRANGE", stream, "+", "-", "COUNT", RedisArgument(limit)]), room: room).reversed()
    }

    /// Reads each room after its subscribers' position and delivers what they missed: run on the
    /// subscriber's thread right after it (re)subscribed, before it hands over any newer message.
    /// The command connection may still be reconnecting, so each read is retried for a few
    /// seconds. Returns false if the gap could not be filled: the subscriber then subscribes
    /// again and this runs again.
    func fillGaps() -> Bool {
        let positions = sink.resumePositions()
        guard !positions.isEmpty else { return true }
        var filled = 0
        for (room, position) in positions {
            var after = position
            while true {
                let page: [StoredMessage]
                do {
                    page = try readRetrying(room: room, after: after)
                } catch {
                    logger.warning("gap fill failed; subscribing again", metadata: ["room": "\(room)", "error": "\(error)"])
                    metrics.gapFillMessages.increment(by: Int64(filled))
                    return false
                }
                for message in page { sink.deliver(message) }
                filled += page.count
                guard page.count == Self.gapFillPage, let last = page.last else { break }
                after = last.id
            }
        }
        metrics.gapFillMessages.increment(by: Int64(filled))
        logger.info("gap filled", metadata: ["rooms": "\(positions.count)", "messages": "\(filled)"])
        return true
    }

    static let gapFillPage = 500

    /// One page of history after `id`, retried for up to 3 s while the command connection is still
    /// coming back (blocking: only on the subscriber's thread).
    private func readRetrying(room: RoomName, after id: MessageID) throws -> [StoredMessage] {
        let deadline = ContinuousClock.now + .seconds(3)
        while true {
            do {
                return try blocking { try await self.history(room: room, after: id, limit: Self.gapFillPage) }
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }

    // MARK: Helpers

    private func call(_ command: RedisCommand) async throws -> RedisReply {
        try await pipeline([command])[0]
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

    /// XRANGE / XREVRANGE entries `[id, [field, value, …]]` as messages: the JSON is `{"id":"` + id + tail.
    static func entries(_ reply: RedisReply, room: RoomName) throws -> [StoredMessage] {
        guard let entries = reply.array else { throw BrokerError.unavailable("unexpected reply: \(reply)") }
        return entries.compactMap { entry in
            guard let parts = entry.array, parts.count == 2, let idText = parts[0].string, let id = MessageID(idText),
                let fields = parts[1].array, fields.count >= 2, let tail = fields[1].bytes
            else { return nil }
            return StoredMessage(id: id, room: room, json: json(id: idText, tail: tail))
        }
    }

    /// The message JSON from its id and the tail the stream stores: `{"id":"` + id + tail (the same
    /// concatenation the publish script makes for the live event).
    static func json(id: String, tail: [UInt8]) -> ByteBuffer {
        var json = ByteBuffer()
        json.reserveCapacity(tail.count + 32)
        json.writeStaticString("{\"id\":\"")
        json.writeString(id)
        json.writeBytes(tail)
        return json
    }

    /// A live event: `<room> <id> <json>`.
    static func parseEvent(_ payload: [UInt8]) -> StoredMessage? {
        guard let firstSpace = payload.firstIndex(of: UInt8(ascii: " ")),
            let room = RoomName(String(decoding: payload[..<firstSpace], as: UTF8.self)),
            let secondSpace = payload[(firstSpace + 1)...].firstIndex(of: UInt8(ascii: " ")),
            let id = MessageID(String(decoding: payload[(firstSpace + 1)..<secondSpace], as: UTF8.self))
        else { return nil }
        return StoredMessage(id: id, room: room, json: ByteBuffer(bytes: payload[(secondSpace + 1)...]))
    }
}

/// Runs async work from a plain thread and waits for it (the subscriber's thread, never an event loop).
private func blocking<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
    let result = Mutex<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let outcome: Result<T, any Error>
        do { outcome = .success(try await work()) } catch { outcome = .failure(error) }
        result.withLock { $0 = outcome }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0! }.get()
}

/// Whether each of the broker's two connections is up; the broker is up when both are.
private final class ConnectionState: Sendable {
    private let flags = Mutex<(command: Bool, subscriber: Bool)>((false, false))

    var isUp: Bool { flags.withLock { $0.command && $0.subscriber } }

    func update(_ metrics: RelayMetrics, _ change: (inout (command: Bool, subscriber: Bool)) -> Void) {
        let up = flags.withLock { flags in
            change(&flags)
            return flags.command && flags.subscriber
        }
        metrics.brokerUp.record(up ? 1 : 0)
    }
}

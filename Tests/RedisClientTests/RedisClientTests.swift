import Foundation
import RedisClient
import Synchronization
import TestSupport
import Testing

/// The hiredis wrapper against a real redis-server on a free port.
@Suite struct RedisClientTests {
    func client(_ server: RedisServer, path: String = "") throws -> RedisClient {
        let client = RedisClient(configuration: .init(url: try RedisURL(server.url + path)))
        client.start()
        return client
    }

    /// A started subscriber to "ch" that reports everything to `received`.
    func subscriber(_ server: RedisServer, reporting received: Received) throws -> RedisSubscriber {
        startedSubscriber(.init(url: try RedisURL(server.url), channels: ["ch"]), reporting: received)
    }

    @Test func argvCarriesBinaryAndUTF8Exactly() async throws {
        let server = try await RedisServer(appendOnly: false)
        defer { server.killNow() }
        let client = try client(server)
        defer { client.stop() }
        let binary: [UInt8] = [0, 1, 2, 13, 10, 0xFF, 0xFE, 32, 0x24, 0x2A]  // NUL, CR LF, invalid UTF-8, "$", "*"
        let text = "héllo wörld 😀 \u{2028} \"quoted\" with spaces"
        let replies = try await client.pipeline([
            ["SET", "bin", RedisArgument(binary)],
            ["GET", "bin"],
            ["SET", RedisArgument("ключ 🔑"), RedisArgument(text)],
            ["GET", RedisArgument("ключ 🔑")],
            ["SET", "empty", ""],
            ["GET", "empty"],
        ])
        #expect(replies[0] == .status("OK"))
        #expect(replies[1] == .bulk(binary))
        #expect(replies[3].string == text)
        #expect(replies[5] == .bulk([]))
    }

    @Test func everyReplyType() async throws {
        let server = try await RedisServer(appendOnly: false)
        defer { server.killNow() }
        let client = try client(server)
        defer { client.stop() }
        #expect(try await client.command(["PING"]) == .status("PONG"))
        #expect(try await client.command(["INCRBY", "counter", "41"]) == .integer(41))
        #expect(try await client.command(["GET", "missing"]) == .null)
        _ = try await client.command(["RPUSH", "list", "a", "b"])
        #expect(try await client.command(["LRANGE", "list", "0", "-1"]) == .array([.bulk(Array("a".utf8)), .bulk(Array("b".utf8))]))
        #expect(try await client.command(["LRANGE", "nothing", "0", "-1"]) == .array([]))
        // Nested arrays: XRANGE entries are [id, [field, value]].
        _ = try await client.command(["XADD", "s", "1-1", "f", "v"])
        #expect(
            try await client.command(["XRANGE", "s", "-", "+"])
                == .array([.array([.bulk(Array("1-1".utf8)), .array([.bulk(Array("f".utf8)), .bulk(Array("v".utf8))])])]))
        // An error reply is a value, and the connection stays usable.
        let error = try await client.command(["INCR", "list"])
        guard case .error(let message) = error else {
            Issue.record("expected an error reply, got \(error)")
            return
        }
        #expect(message.hasPrefix("WRONGTYPE"))
        #expect(try await client.command(["NOSUCHCOMMAND"]).string == nil)
        #expect(try await client.command(["PING"]) == .status("PONG"))
    }

    @Test func fieldsAndValuesReadAsPairs() {
        let reply = RedisReply.array([.bulk(Array("a".utf8)), .bulk(Array("1".utf8)), .bulk(Array("b".utf8)), .bulk(Array("2".utf8))])
        #expect(reply.pairs?.map { "\($0.0.string ?? "")=\($0.1.string ?? "")" } == ["a=1", "b=2"])
        #expect(RedisReply.array([.bulk(Array("a".utf8))]).pairs?.isEmpty == true)
        #expect(RedisReply.array([]).pairs?.isEmpty == true)
        #expect(RedisReply.integer(1).pairs == nil)
    }

    @Test func pipelinesKeepOrderAcrossConcurrentCallers() async throws {
        let server = try await RedisServer(appendOnly: false)
        defer { server.killNow() }
        let client = try client(server)
        defer { client.stop() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0..<20 {
                group.addTask {
                    for round in 0..<50 {
                        let replies = try await client.pipeline([
                            ["RPUSH", RedisArgument("order-\(caller)"), RedisArgument(round)],
                            ["ECHO", RedisArgument("\(caller)/\(round)")],
                        ])
                        #expect(replies[0] == .integer(Int64(round + 1)))
                        #expect(replies[1].string == "\(caller)/\(round)")
                    }
                }
            }
            try await group.waitForAll()
        }
        let list = try await client.command(["LRANGE", "order-7", "0", "-1"])
        #expect(list.array?.compactMap(\.string) == (0..<50).map(String.init))
    }

    @Test func reconnectsAfterTheServerRestarts() async throws {
        let server = try await RedisServer(appendOnly: true)
        defer { server.killNow() }
        let client = try client(server)
        defer { client.stop() }
        #expect(try await client.command(["SET", "k", "before"]) == .status("OK"))
        await server.kill()
        // Down: calls fail fast with a clear error instead of hanging.
        var failures = 0
        for _ in 0..<5 {
            do {
                _ = try await client.command(["GET", "k"])
            } catch let error as RedisError {
                failures += 1
                #expect(error.description.contains("Redis"))
            }
        }
        #expect(failures == 5)
        #expect(!client.isConnected)
        try await server.start()
        var value: RedisReply? = nil
        for _ in 0..<100 where value == nil {
            value = try? await client.command(["GET", "k"])
            if value == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(value?.string == "before", "the append-only file kept the write, and the client came back")
        #expect(client.isConnected)
    }

    /// A server that stops answering with its connections open: requests fail once their reply
    /// is overdue instead of hanging, the subscriber declares it dead, and both come back after.
    @Test(.timeLimit(.minutes(1))) func aFrozenServerIsDroppedAndFoundAgain() async throws {
        let server = try await RedisServer(appendOnly: false)
        defer {
            server.thaw()
            server.killNow()
        }
        let client = try client(server)
        defer { client.stop() }
        let received = Received()
        let subscriber = try subscriber(server, reporting: received)
        defer { subscriber.stop() }
        #expect(try await client.command(["SET", "k", "v"]) == .status("OK"))
        #expect(await received.wait { $0.subscribed == 1 })

        server.freeze()
        let frozenAt = ContinuousClock.now
        await #expect(throws: RedisError.self) { try await client.command(["GET", "k"]) }
        // The bounds are the client's deadlines (a 2 s command timeout, a 1.5 s ping deadline),
        // with room for a machine busy with the suites beside this one: "not never" is the point.
        let waited = ContinuousClock.now - frozenAt
        #expect(waited >= .seconds(1) && waited < .seconds(8), "the request failed after \(waited), not at once and not never")
        #expect(await received.wait { $0.downs >= 1 })
        #expect(ContinuousClock.now - frozenAt < .seconds(8), "the subscription was declared dead within its ping deadline")
        #expect(!subscriber.isSubscribed)
        // A new connection is accepted by the kernel, but its AUTH is never answered.
        let late = RedisClient(configuration: .init(url: try RedisURL("redis://:pw@127.0.0.1:\(server.port)")))
        late.start()
        defer { late.stop() }
        let lateAt = ContinuousClock.now
        await #expect(throws: RedisError.self) { try await late.command(["PING"]) }
        #expect(ContinuousClock.now - lateAt < .seconds(6), "a connection attempt to a frozen server gives up")

        server.thaw()
        var value: RedisReply? = nil
        for _ in 0..<100 where value == nil {
            value = try? await client.command(["GET", "k"])
            if value == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(value?.string == "v")
        #expect(await received.wait { $0.reconnections == 1 })
    }

    @Test func authAndSelectFromTheURL() async throws {
        let server = try await RedisServer(appendOnly: false, arguments: ["--requirepass", "s3cr:t"])
        defer { server.killNow() }
        let client = RedisClient(configuration: .init(url: try RedisURL("redis://:s3cr%3At@127.0.0.1:\(server.port)/3")))
        client.start()
        defer { client.stop() }
        #expect(try await client.command(["SET", "where", "db3"]) == .status("OK"))
        #expect(try await client.command(["CLIENT", "INFO"]).string?.contains("db=3") == true)
        let wrong = RedisClient(configuration: .init(url: try RedisURL("redis://:nope@127.0.0.1:\(server.port)")))
        wrong.start()
        defer { wrong.stop() }
        await #expect(throws: RedisError.self) { try await wrong.command(["PING"]) }
    }

    @Test func urls() throws {
        #expect(try RedisURL("redis://localhost") == RedisURL(host: "localhost"))
        #expect(try RedisURL("redis://h:6380/2") == RedisURL(host: "h", port: 6380, database: 2))
        #expect(try RedisURL("redis://:pw@h:1") == RedisURL(host: "h", port: 1, password: "pw"))
        #expect(try RedisURL("redis://user:p%40ss@h") == RedisURL(host: "h", user: "user", password: "p@ss"))
        #expect(try RedisURL("redis://[::1]:7000") == RedisURL(host: "::1", port: 7000))
        #expect(try RedisURL("redis://:pw@h:1").description == "redis://:***@h:1/0")
        for bad in ["http://h", "redis://", "redis://h:0", "redis://h:x", "redis://h/x"] {
            #expect(throws: RedisError.self) { try RedisURL(bad) }
        }
    }

    /// A subscriber that hears messages does not ping (each ping is a wake-up for the server and
    /// the node, for nothing); one that heard nothing for its ping interval does.
    @Test(.timeLimit(.minutes(1))) func aSubscriberPingsOnlyWhenItHearsNothing() async throws {
        let server = try await RedisServer(appendOnly: false)
        defer { server.killNow() }
        let received = Received()
        let subscriber = try subscriber(server, reporting: received)
        defer { subscriber.stop() }
        #expect(await received.wait { $0.subscribed == 1 })
        let client = try client(server)
        defer { client.stop() }
        // PINGs the server answered: the subscriber's (the publishing client is never idle, so it
        // does not ping meanwhile; its own come after 1 s of quiet).
        func pings() async throws -> Int {
            let stats = try await client.command(["INFO", "commandstats"]).string ?? ""
            guard let line = stats.split(separator: "\r\n").first(where: { $0.hasPrefix("cmdstat_ping:") }),
                let calls = line.split(separator: ",").first?.split(separator: "=").last
            else { return 0 }
            return Int(calls) ?? -1
        }
        _ = try await client.command(["CONFIG", "RESETSTAT"])
        for index in 0..<30 {
            _ = try await client.command(["PUBLISH", "ch", RedisArgument("m\(index)")])
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(await received.wait { $0.messages.count == 30 })
        #expect(try await pings() == 0, "3 s of messages every 0.1 s, and no ping")
        try await Task.sleep(for: .milliseconds(900))  // quiet for longer than the 0.5 s interval
        #expect(try await pings() >= 1, "a quiet subscriber pings")
    }

    @Test func subscriberDeliversInOrderAndComesBackAfterARestart() async throws {
        let server = try await RedisServer(appendOnly: false)
        defer { server.killNow() }
        let received = Received()
        let subscriber = try subscriber(server, reporting: received)
        defer { subscriber.stop() }
        #expect(await received.wait { $0.subscribed == 1 })
        let client = try client(server)
        defer { client.stop() }
        for index in 0..<100 { _ = try await client.command(["PUBLISH", "ch", RedisArgument("m\(index)")]) }
        #expect(await received.wait { $0.messages.count == 100 })
        #expect(received.snapshot.messages == (0..<100).map { "m\($0)" })

        let downAt = ContinuousClock.now
        await server.kill()
        #expect(await received.wait { $0.downs >= 1 })
        #expect(ContinuousClock.now - downAt < .seconds(2), "a lost server is noticed within 2 s")
        #expect(!subscriber.isSubscribed)
        try await server.start()
        #expect(await received.wait { $0.reconnections == 1 })
        #expect(subscriber.isSubscribed)
    }

    /// Channels asked for while running: each confirmed before `listen` returns, given up after the
    /// linger once unwanted, subscribed again in batches after a restart, and kept when asked for
    /// while the server is down.
    @Test(.timeLimit(.minutes(2))) func listenedChannelsComeAndGo() async throws {
        let server = try await RedisServer(appendOnly: false)
        defer { server.killNow() }
        let wanted = Mutex<Set<String>>([])
        let received = Received()
        var configuration = RedisSubscriber.Configuration(url: try RedisURL(server.url), channels: [])
        configuration.linger = .milliseconds(500)
        configuration.batch = 100
        let subscriber = startedSubscriber(
            configuration, reporting: received,
            stillWanted: { channel in
                wanted.withLock { $0.contains(channel) }
            })
        defer { subscriber.stop() }
        #expect(await received.wait { $0.subscribed == 1 }, "up with no channel at all")
        let client = try client(server)
        defer { client.stop() }
        /// Redis's count of the channels; the client may still be reconnecting after a restart
        /// (it fails at once meanwhile), so asked again until it answers.
        func subscribedChannels() async throws -> Int {
            let deadline = ContinuousClock.now + .seconds(10)
            while true {
                do {
                    return try await client.command(["PUBSUB", "CHANNELS", "room-*"]).array?.count ?? -1
                } catch {
                    guard ContinuousClock.now < deadline else { throw error }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        }

        let channels = (0..<250).map { "room-\($0)" }
        wanted.withLock { $0 = Set(channels) }
        for channel in channels {
            try await subscriber.listen(channel).get()
            // Confirmed: a message published right after reaches it.
            _ = try await client.command(["PUBLISH", RedisArgument(channel), RedisArgument(channel)])
        }
        #expect(await received.wait { $0.messages.count == 250 })
        #expect(received.snapshot.messages == channels)
        #expect(try await subscribedChannels() == 250)

        // A restart: all 250 again (three SUBSCRIBE commands of up to 100), then `onSubscribed`.
        await server.kill()
        try await server.start()
        #expect(await received.wait { $0.reconnections == 1 })
        #expect(try await subscribedChannels() == 250)
        _ = try await subscribedChannels()  // the client is back
        _ = try await client.command(["PUBLISH", "room-249", "again"])
        #expect(await received.wait { $0.messages.last == "again" })

        // Unwanted for the linger: given up, all but one.
        wanted.withLock { $0 = ["room-0"] }
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await subscribedChannels() == 250, "not before the linger")
        let deadline = ContinuousClock.now + .seconds(5)
        while try await subscribedChannels() != 1, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(try await subscribedChannels() == 1)
        #expect(try await subscriber.listening().get() == ["room-0"])

        // Asked for while the server is down: kept, and subscribed when it is back.
        await server.kill()
        #expect(await received.wait { $0.downs >= 1 })
        _ = wanted.withLock { $0.insert("room-late") }
        try await subscriber.listen("room-late").get()
        try await server.start()
        #expect(await received.wait { $0.reconnections == 2 })
        #expect(try await subscribedChannels() == 2)
    }
}

/// A started subscriber of `configuration` that reports what it hears to `received`, asks
/// `stillWanted` about its channels and tells `onMoved` of sharded channels the server dropped.
func startedSubscriber(
    _ configuration: RedisSubscriber.Configuration, reporting received: Received,
    stillWanted: @escaping @Sendable (String) -> Bool = { _ in true }, onMoved: @escaping @Sendable (String) -> Void = { _ in }
) -> RedisSubscriber {
    let subscriber = RedisSubscriber(configuration: configuration) { reconnected in
        received.subscribed(reconnected: reconnected)
        return .proceed
    } onMessage: { _, payload in
        received.message(payload)
    } onDown: { _ in
        received.down()
    } stillWanted: {
        stillWanted($0)
    } onMoved: {
        onMoved($0)
    }
    subscriber.start()
    return subscriber
}

/// What a subscriber reported, for the test to wait on.
final class Received: Sendable {
    struct Snapshot {
        var subscribed = 0
        var reconnections = 0
        var downs = 0
        var messages: [String] = []
    }

    private let state = Mutex(Snapshot())

    func subscribed(reconnected: Bool) {
        state.withLock { state in
            state.subscribed += 1
            if reconnected { state.reconnections += 1 }
        }
    }

    func message(_ payload: [UInt8]) {
        state.withLock { $0.messages.append(String(decoding: payload, as: UTF8.self)) }
    }

    func down() {
        state.withLock { $0.downs += 1 }
    }

    var snapshot: Snapshot { state.withLock { $0 } }

    func wait(timeout: Duration = .seconds(10), until condition: (Snapshot) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition(snapshot) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition(snapshot)
    }
}

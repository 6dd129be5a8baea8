import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What a client can make a node hold, tried past its bounds on real nodes: streams that close
/// (by FIN and by RST) give back their memory, half-sent and idle connections are closed, the
/// open-connection limit refuses clearly, and idle rooms expire. One test at a time: the churn
/// keeps both cores busy, and the others time connections.
@Suite(.serialized) struct NodeAbuseTests {
    /// `GET path` on a connection of its own that closes after the answer, so that the test's
    /// own requests hold no kept-alive connection the node would count.
    static func rawGet(_ node: RelayProcess, _ path: String) async throws -> String {
        let socket = try RawSocket(port: node.port, receiveBuffer: 1 << 20)
        defer { socket.close() }
        try socket.send("GET \(path) HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return await socket.receive(until: { _ in false }, timeout: .seconds(10))
    }

    /// The value of an unlabelled metric.
    static func metric(_ node: RelayProcess, _ name: String) async throws -> Double? {
        try await rawGet(node, "/metrics").split(separator: "\n")
            .first { $0.hasPrefix(name + " ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    /// Descriptors the process holds.
    static func descriptors(_ node: RelayProcess) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(node.pid)/fd").count) ?? -1
    }

    /// Opens `count` streams in batches of `batch` over 20 rooms and closes them: every third
    /// with a reset, every fifth asked for after another request on its connection, and a
    /// message posted to every room between batches. Returns how many
    /// streams did not open.
    static func churn(_ node: RelayProcess, count: Int, batch: Int = 250) async -> Int {
        let port = node.port
        do {
            var failures = 0
            var opened = 0
            while opened < count {
                var sockets: [RawSocket] = []
                for index in opened..<min(opened + batch, count) {
                    guard let socket = try? RawSocket(port: port, receiveBuffer: 16384) else {
                        failures += 1
                        continue
                    }
                    if index % 5 == 0 {
                        try? socket.send("GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
                        _ = await socket.receive(until: { $0.contains("{\"status\":\"ok\"}") }, timeout: .seconds(10))
                    }
                    try? socket.send("GET /rooms/churn-\(index % 20)/events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
                    sockets.append(socket)
                }
                for socket in sockets
                where !(await socket.receive(until: { $0.contains(": chat-relay node") }, timeout: .seconds(10))).contains(
                    ": chat-relay node")
                {
                    failures += 1
                }
                for room in 0..<20 {
                    let body = "{\"user\":\"c\",\"text\":\"batch \(opened)\"}"
                    if let poster = try? RawSocket(port: port, receiveBuffer: 65536) {
                        try? poster.send(
                            "POST /rooms/churn-\(room)/messages HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
                        )
                        _ = await poster.receive(until: { $0.contains("}") }, timeout: .seconds(10))
                        poster.close()
                    }
                }
                for (index, socket) in sockets.enumerated() {
                    if index % 3 == 0 { socket.reset() } else { socket.close() }
                }
                opened += batch
            }
            return failures
        }
    }

    /// Waits until the node counts no stream, no subscribed room and only the connection asking.
    static func waitUntilIdle(_ node: RelayProcess) async throws -> (streams: Double?, rooms: Double?, connections: Double?) {
        var last: (Double?, Double?, Double?) = (nil, nil, nil)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            last = await (
                try metric(node, "chat_relay_open_streams"), try metric(node, "chat_relay_subscribed_rooms"),
                try metric(node, "chat_relay_open_connections")
            )
            if last.0 == 0, last.1 == 0, last.2 == 1 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        return last
    }

    /// A node on `broker` ("embedded", or "redis": a redis-server of its own), with `arguments`.
    static func node(on broker: String, _ arguments: [String]) async throws -> (RelayProcess, RedisServer?) {
        let redis = broker == "redis" ? try await RedisServer(appendOnly: false) : nil
        do {
            return (try await RelayProcess(arguments: arguments + (redis.map { ["--redis-url", $0.url] } ?? [])), redis)
        } catch {
            redis?.killNow()
            throw error
        }
    }

    @Test(.timeLimit(.minutes(5)), arguments: ["embedded", "redis"])
    func tenThousandClosedStreamsGiveBackTheirMemory(broker: String) async throws {
        let (node, redis) = try await Self.node(on: broker, ["--rate-limit", "0", "--no-client-limits"])
        defer {
            node.kill()
            redis?.killNow()
        }
        let descriptorsAtStart = Self.descriptors(node)

        // Warm-up: the allocator's pools and the node's tables reach their working size.
        #expect(await Self.churn(node, count: 2000) == 0)
        _ = try await Self.waitUntilIdle(node)
        let warm = try #require(node.residentBytes())

        #expect(await Self.churn(node, count: 10_000) == 0)
        let idle = try await Self.waitUntilIdle(node)
        #expect(idle.streams == 0, "chat_relay_open_streams")
        #expect(idle.rooms == 0, "chat_relay_subscribed_rooms")
        #expect(idle.connections == 1, "chat_relay_open_connections (the one asking)")
        let after = try #require(node.residentBytes())
        // A stream's connection is about 4.5 KiB: kept, 10 000 of them would be 44 MiB.
        #expect(after - warm < 4 << 20, "resident memory grew by \((after - warm) >> 10) KiB over 10 000 closed streams (\(broker))")
        #expect(Self.descriptors(node) <= descriptorsAtStart + 2, "descriptors: \(Self.descriptors(node)), at start \(descriptorsAtStart)")
    }

    @Test(.timeLimit(.minutes(2)))
    func halfSentRequestsAndIdleConnectionsAreClosedAndStreamsAreNot() async throws {
        let node = try await RelayProcess(arguments: [
            "--request-timeout", "1", "--idle-timeout", "2", "--heartbeat", "30", "--max-connections-per-client", "0",
        ])
        defer { node.kill() }
        // A stream as a connection's first request, and one after another request.
        let direct = try RawSocket(port: node.port, get: "/rooms/t/events", receiveBuffer: 65536)
        let routed = try RawSocket(port: node.port, receiveBuffer: 65536)
        try routed.send("GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(await routed.receive(until: { $0.contains("\"ok\"}") }, timeout: .seconds(10)).contains("200 OK"))
        try routed.send("GET /rooms/t/events HTTP/1.1\r\nHost: t\r\n\r\n")
        for stream in [direct, routed] {
            #expect(await stream.receive(until: { $0.contains(": chat-relay node") }, timeout: .seconds(10)).contains("200 OK"))
        }

        var halfHeads: [RawSocket] = []
        for _ in 0..<300 {
            let socket = try RawSocket(port: node.port, receiveBuffer: 8192)
            try socket.send("GET /rooms/x/events HTTP/1.1\r\nHost: x\r\n")
            halfHeads.append(socket)
        }
        var halfBodies: [RawSocket] = []
        for _ in 0..<20 {
            let socket = try RawSocket(port: node.port, receiveBuffer: 8192)
            try socket.send(
                "POST /rooms/x/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user\"")
            halfBodies.append(socket)
        }
        var silent: [RawSocket] = []
        for _ in 0..<50 { silent.append(try RawSocket(port: node.port, receiveBuffer: 8192)) }
        var keptAlive: [RawSocket] = []
        for _ in 0..<50 {
            let socket = try RawSocket(port: node.port, receiveBuffer: 8192)
            try socket.send("GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(await socket.receive(until: { $0.contains("\"ok\"}") }, timeout: .seconds(10)).contains("200 OK"))
            keptAlive.append(socket)
        }

        // What each gets before the node closes it: everything up to the close.
        let sockets = halfHeads + halfBodies + silent + keptAlive
        var received: [String] = []
        for socket in sockets { received.append(await socket.receive(until: { _ in false }, timeout: .seconds(15))) }
        let heads = received[0..<300]
        let bodies = received[300..<320]
        #expect(
            heads.allSatisfy { $0.hasPrefix("HTTP/1.1 408 Request Timeout\r\n") && $0.contains("\"error\":\"request_timeout\"") },
            "a half-sent head gets 408: \(heads.first { !$0.hasPrefix("HTTP/1.1 408") } ?? "")")
        #expect(bodies.allSatisfy { $0.hasPrefix("HTTP/1.1 408 Request Timeout\r\n") && $0.contains("Connection: close") })
        #expect(received[320..<370].allSatisfy { $0.isEmpty }, "a connection that sent nothing is closed without a word")
        #expect(received[370...].allSatisfy { $0.isEmpty }, "an idle kept-alive connection is closed without a word")
        #expect(sockets.allSatisfy { $0.peerClosed() })

        // The streams outlived both timeouts and still get what is posted.
        #expect(try await HTTP.postMessage(node.baseURL + "/rooms/t/messages", user: "u", text: "still here").status == 201)
        for stream in [direct, routed] {
            #expect(await stream.receive(until: { $0.contains("still here") }, timeout: .seconds(10)).contains("still here"))
        }
        let metrics = try await Self.rawGet(node, "/metrics")
        #expect(metrics.contains("chat_relay_connections_timed_out_total{reason=\"request\"} 320"), "\(metrics)")
        #expect(metrics.contains("chat_relay_connections_timed_out_total{reason=\"idle\"}"))
    }

    @Test(.timeLimit(.minutes(2)))
    func connectionsPastTheOpenConnectionLimitAreRefusedClearly() async throws {
        // A request timeout long enough that none of the 256 waiting connections below times out
        // (freeing a place) before the 257th is tried, however busy the machine: with 3 s it
        // happened once under the full suite, and the 257th got an answer.
        let node = try await RelayProcess(arguments: [
            "--max-open-connections", "20", "--max-connections-per-client", "0", "--request-timeout", "8", "--idle-timeout", "30",
        ])
        defer { node.kill() }
        // Served connections, each proven admitted by an answer, until one is refused. The test's
        // HTTP client may hold one kept-alive connection of its own from the start-up check.
        var served: [RawSocket] = []
        var refusal = ""
        while served.count < 21 {
            let socket = try RawSocket(port: node.port, receiveBuffer: 65536)
            try socket.send("GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            let answer = await socket.receive(until: { $0.hasSuffix("}") }, timeout: .seconds(10))
            guard answer.hasPrefix("HTTP/1.1 200 OK") else {
                refusal = answer
                #expect(await socket.receive(until: { _ in false }, timeout: .seconds(10)).isEmpty)
                #expect(socket.peerClosed(), "a refused connection is closed after its answer")
                break
            }
            served.append(socket)
        }
        #expect((19...20).contains(served.count), "served \(served.count) of 20")
        // The same refusal a stream gets at --max-connections: 503, JSON, Retry-After.
        #expect(refusal.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), "\(refusal)")
        #expect(refusal.contains("Retry-After: 2\r\n") && refusal.contains("Connection: close\r\n"))
        #expect(refusal.contains("\"error\":\"unavailable\"") && refusal.contains("limit of 20 open connections"))

        // Refusals are bounded too: past 256 waiting to be answered, a connection is closed at once.
        let baseline = Self.descriptors(node)
        var waiting: [RawSocket] = []
        for _ in 0..<256 { waiting.append(try RawSocket(port: node.port, receiveBuffer: 4096)) }
        var accepted = false
        for _ in 0..<200 where !accepted {
            accepted = Self.descriptors(node) >= baseline + 256
            if !accepted { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(accepted, "the node accepted the waiting connections")
        let dropped = try RawSocket(port: node.port, receiveBuffer: 4096)
        try? dropped.send("GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(await dropped.receive(until: { _ in false }, timeout: .seconds(10)).isEmpty)
        #expect(dropped.peerClosed())

        // The waiting ones are closed at their request timeout, unanswered (they sent nothing);
        // then closing served connections makes room.
        var waitingClosedUnanswered = true
        for socket in waiting where !(await socket.receive(until: { _ in false }, timeout: .seconds(15))).isEmpty || !socket.peerClosed() {
            waitingClosedUnanswered = false
        }
        #expect(waitingClosedUnanswered)
        for socket in served.prefix(5) { socket.close() }
        var welcome = false
        for _ in 0..<200 where !welcome {
            welcome = await (try? Self.rawGet(node, "/health/live"))?.hasPrefix("HTTP/1.1 200 OK") == true
            if !welcome { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(welcome)
    }

    /// `redis-cli` against `redis`: its answer as text.
    static func redisCLI(_ redis: RedisServer, _ arguments: [String]) async throws -> String {
        try await ChildProcess.run("/usr/bin/redis-cli", ["-p", "\(redis.port)"] + arguments).output.trimmingCharacters(
            in: .whitespacesAndNewlines)
    }

    @Test(.timeLimit(.minutes(2)), arguments: ["embedded", "redis"])
    func anIdleRoomsHistoryExpiresAndAClientResumingInItGetsReset(broker: String) async throws {
        let (node, redis) = try await Self.node(on: broker, ["--history-ttl", "4s"])
        defer {
            node.kill()
            redis?.killNow()
        }
        let url = node.baseURL + "/rooms/expiring"
        var ids: [String] = []
        for index in 0..<3 {
            ids.append(try #require(try await HTTP.postMessage(url + "/messages", user: "u", text: "m\(index)").json["id"] as? String))
        }
        if let redis {
            // Every key of the room carries the TTL, refreshed by each message.
            for key in ["chat-relay:room:expiring", "chat-relay:trimmed:expiring"] {
                let ttl = try #require(Int(try await Self.redisCLI(redis, ["PTTL", key])), "\(key)")
                #expect((1...4000).contains(ttl), "\(key) expires in \(ttl) ms")
            }
        }
        var expired = false
        let deadline = ContinuousClock.now + .seconds(20)
        while !expired, ContinuousClock.now < deadline {
            expired = try await HTTP.get(url + "/messages").json["messages"].map { ($0 as? [Any])?.isEmpty == true } ?? false
            if !expired { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(expired, "the room's history expired")

        // A client that was in the room learns that it missed something, rather than nothing.
        let late = try await SSEClient(url + "/events", headers: [("Last-Event-ID", ids[2])])
        #expect(await late.wait { $0.events.contains { $0.type == "reset" } })
        #expect(late.events.first == SSEParser.Event(type: "reset", data: "{\"oldest\":null}", lastEventID: ""))
        // The room starts again: a client from before gets reset, then what is there now.
        let fresh = try #require(try await HTTP.postMessage(url + "/messages", user: "u", text: "again").json["id"] as? String)
        #expect(await late.waitForMessages(1))
        #expect(late.messageIDs == [fresh])
        let resumed = try await SSEClient(url + "/events", headers: [("Last-Event-ID", ids[0])])
        #expect(await resumed.waitForMessages(1))
        #expect(resumed.events.first?.type == "reset")
        #expect(resumed.events.first?.data == "{\"oldest\":\"\(fresh)\"}")
        #expect(resumed.messageIDs == [fresh])
        // A client with the new message, or with no id at all, missed nothing.
        let current = try await SSEClient(url + "/events", headers: [("Last-Event-ID", fresh)])
        let newcomer = try await SSEClient(url + "/events")
        let after = try #require(try await HTTP.postMessage(url + "/messages", user: "u", text: "after").json["id"] as? String)
        for client in [current, newcomer] {
            #expect(await client.waitForMessages(1))
            #expect(client.messageIDs == [after])
            #expect(!client.events.contains { $0.type == "reset" })
        }
    }

    @Test func theOldTrustForwardedForFlagIsRefusedWithWhatToUseInstead() async throws {
        do {
            let node = try await RelayProcess(arguments: ["--trust-forwarded-for"])
            node.kill()
            Issue.record("the node started with --trust-forwarded-for")
        } catch let error as RelayProcessError {
            #expect("\(error)".contains("--trusted-proxies"), "\(error)")
        }
    }
}

import Foundation
import TestSupport
import Testing

/// Three relay processes on one real redis-server: every message reaches every node once, in
/// order, across node moves, node crashes and Redis restarts.
@Suite struct ClusterTests {
    /// A Redis and `count` relay nodes on it.
    struct Cluster {
        let redis: RedisServer
        let nodes: [RelayProcess]

        /// - Parameter durable: Redis writes every command to its append-only file before it
        ///   answers, so a test can kill and restart it losing nothing. Only those tests ask: an
        ///   fsync per write, in many servers at once, stalls a busy machine's disk for seconds.
        static func start(nodes count: Int = 3, durable: Bool = false, arguments: [String] = []) async throws -> Cluster {
            let redis = try await RedisServer(appendOnly: durable)
            var nodes: [RelayProcess] = []
            for index in 0..<count {
                nodes.append(
                    try await RelayProcess(nodeID: "node-\(index)", arguments: ["--redis-url", redis.url, "--rate-limit", "0"] + arguments))
            }
            return Cluster(redis: redis, nodes: nodes)
        }

        /// Kills everything at once: for `defer` at the end of a test.
        func kill() {
            for node in nodes { node.kill() }
            redis.killNow()
        }
    }

    @Test func everyMessageReachesEveryNodeExactlyOnceInOrder() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.kill() }
        let rooms = ["alpha", "beta"]
        var subscribers: [(room: String, client: SSEClient)] = []
        for node in cluster.nodes {
            for room in rooms {
                for _ in 0..<2 { subscribers.append((room, try await SSEClient("\(node.baseURL)/rooms/\(room)/events"))) }
            }
        }
        let publisher = Publisher()
        await withTaskGroup(of: Void.self) { group in
            for room in rooms {
                for worker in 0..<3 {
                    group.addTask {
                        for index in 0..<20 {
                            let node = cluster.nodes[(worker + index) % 3]
                            #expect(await publisher.post(node.baseURL, room: room, text: "\(room) \(worker)/\(index)"))
                        }
                    }
                }
            }
        }
        for (room, client) in subscribers {
            let expected = publisher.ids(room)
            #expect(expected.count == 60)
            #expect(await client.waitForMessages(60))
            try await Task.sleep(for: .milliseconds(50))
            #expect(client.messageIDs == expected, "room \(room): every message once, in id order")
            #expect(client.messages.allSatisfy { $0["room"] as? String == room })
        }
        // Each node answered under its own name.
        #expect(Set(subscribers.map { $0.client.headers.first(name: "X-Relay-Node") ?? "" }) == ["node-0", "node-1", "node-2"])
    }

    @Test func resumeOnAnotherNodeGivesExactlyTheMissedMessages() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.kill() }
        let publisher = Publisher()
        let first = try await SSEClient("\(cluster.nodes[0].baseURL)/rooms/r/events")
        for index in 0..<5 { await publisher.post(cluster.nodes[index % 3].baseURL, room: "r", text: "a\(index)") }
        #expect(await first.waitForMessages(5))
        first.close()
        let lastSeen = try #require(first.messageIDs.last)
        for index in 0..<7 { await publisher.post(cluster.nodes[1].baseURL, room: "r", text: "b\(index)") }
        let resumed = try await SSEClient("\(cluster.nodes[2].baseURL)/rooms/r/events", headers: [("Last-Event-ID", lastSeen)])
        #expect(await resumed.waitForMessages(7))
        #expect(resumed.messageIDs == Array(publisher.ids("r").suffix(7)))
        await publisher.post(cluster.nodes[0].baseURL, room: "r", text: "live")
        #expect(await resumed.waitForMessages(8))
        #expect(resumed.messageIDs == Array(publisher.ids("r").suffix(8)))
        #expect(!resumed.events.contains { $0.type == "reset" })
    }

    @Test func idempotencyKeyHoldsAcrossNodes() async throws {
        let cluster = try await Cluster.start(nodes: 2)
        defer { cluster.kill() }
        let stream = try await SSEClient("\(cluster.nodes[1].baseURL)/rooms/i/events")
        let first = try await HTTP.postMessage(
            "\(cluster.nodes[0].baseURL)/rooms/i/messages", user: "u", text: "once", headers: [("Idempotency-Key", "k-1")])
        let retry = try await HTTP.postMessage(
            "\(cluster.nodes[1].baseURL)/rooms/i/messages", user: "u", text: "once", headers: [("Idempotency-Key", "k-1")])
        #expect(first.status == 201)
        #expect(retry.status == 200)
        #expect(retry.body == first.body)
        let other = try await HTTP.postMessage(
            "\(cluster.nodes[1].baseURL)/rooms/j/messages", user: "u", text: "other room", headers: [("Idempotency-Key", "k-1")])
        #expect(other.status == 201)
        #expect(await stream.waitForMessages(1))
        try await Task.sleep(for: .milliseconds(300))
        #expect(stream.messages.count == 1)
        let history = try await HTTP.get("\(cluster.nodes[1].baseURL)/rooms/i/messages")
        #expect((history.json["messages"] as? [Any])?.count == 1)
    }

    /// `--redis-min-replicas-ack` on one Redis: without a replica a message is stored but not
    /// acknowledged (503, with what to do); once a replica follows, it gets its 201, and the
    /// retry of the refused one with its Idempotency-Key gets that first message back. The wait
    /// for the replica is 2 s: a loaded machine's replica can take longer than 0.2 s to answer
    /// the master's GETACK.
    @Test func aMessageIsAcknowledgedOnlyOnceAReplicaHasIt() async throws {
        let cluster = try await Cluster.start(
            nodes: 1, arguments: ["--redis-min-replicas-ack", "1", "--redis-replicas-ack-timeout", "2"])
        defer { cluster.kill() }
        let url = "\(cluster.nodes[0].baseURL)/rooms/acked/messages"
        let key = [("Idempotency-Key", "first")]
        let alone = try await HTTP.postMessage(url, user: "u", text: "no replica yet", headers: key)
        #expect(alone.status == 503)
        #expect((alone.json["message"] as? String)?.contains("0 of the 1 replicas it needs") == true, "\(alone.body)")
        #expect((alone.json["message"] as? String)?.contains("Idempotency-Key") == true)

        let replica = try await RedisServer(appendOnly: false, arguments: ["--replicaof", "127.0.0.1", "\(cluster.redis.port)"])
        defer { replica.killNow() }
        let replicated = await eventually(timeout: .seconds(20), pause: .milliseconds(100)) {
            // Each try with the same key: a refused one is stored all the same.
            [200, 201].contains(
                (try? await HTTP.postMessage(url, user: "u", text: "with a replica", headers: [("Idempotency-Key", "second")]))?.status)
        }
        #expect(replicated, "acknowledged once a replica confirms")
        let retry = try await HTTP.postMessage(url, user: "u", text: "no replica yet", headers: key)
        #expect(retry.status == 200, "the refused message was stored: its retry gets it back")
        #expect(try await NodeAbuseTests.redisCLI(replica, ["XLEN", "chat-relay:room:acked"]) == "2", "the replica has both")
    }

    @Test func resetWhenRedisTrimmedWhatTheClientMissed() async throws {
        let cluster = try await Cluster.start(nodes: 1, arguments: ["--history", "5"])
        defer { cluster.kill() }
        let node = cluster.nodes[0]
        let publisher = Publisher()
        for index in 0..<20 { await publisher.post(node.baseURL, room: "t", text: "m\(index)") }
        let ids = publisher.ids("t")
        let stream = try await SSEClient("\(node.baseURL)/rooms/t/events", headers: [("Last-Event-ID", ids[0])])
        #expect(await stream.wait { $0.messages.count >= 5 })
        let reset = try #require(stream.events.first)
        #expect(reset.type == "reset")
        let retained = stream.messageIDs
        #expect(retained.count >= 5 && retained.count <= 6, "the stream keeps --history messages, plus at most its trim step")
        #expect(retained == Array(ids.suffix(retained.count)))
        #expect(reset.data == "{\"oldest\":\"\(retained[0])\"}")
        // Resuming right after the newest trimmed message is no gap.
        let index = ids.firstIndex(of: retained[0])! - 1
        let noGap = try await SSEClient("\(node.baseURL)/rooms/t/events", headers: [("Last-Event-ID", ids[index])])
        #expect(await noGap.waitForMessages(retained.count))
        #expect(noGap.events.allSatisfy { $0.type == "message" })
        let history = try await HTTP.get("\(node.baseURL)/rooms/t/messages?limit=3")
        #expect((history.json["messages"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == Array(ids.suffix(3)))
    }

    @Test func redisKilledAndRestartedLosesNothingThatGotA201() async throws {
        let cluster = try await Cluster.start(durable: true)
        defer { cluster.kill() }
        var subscribers: [SSEClient] = []
        for node in cluster.nodes {
            for _ in 0..<2 { subscribers.append(try await SSEClient("\(node.baseURL)/rooms/outage/events")) }
        }
        let publisher = Publisher()
        let stop = StopSignal()
        let publishing = Task {
            var index = 0
            while !stop.isSet {
                await publisher.post(cluster.nodes[index % 3].baseURL, room: "outage", text: "n\(index)")
                index += 1
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        // Some messages before the outage (counted, not timed: CI machines are slow under load).
        let acceptedCount = { publisher.count("outage") }
        try #require(await eventually { acceptedCount() >= 10 }, "no POST accepted before the outage")
        let killedAt = ContinuousClock.now
        await cluster.redis.kill()

        // Every node turns unready within 2 s, and refuses POSTs while Redis is down.
        for node in cluster.nodes {
            var unready = false
            while !unready, ContinuousClock.now - killedAt < .seconds(2) {
                unready = try await HTTP.get("\(node.baseURL)/health/ready").status == 503
                if !unready { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(unready, "\(node.nodeID) still ready \(ContinuousClock.now - killedAt) after Redis died")
        }
        let refusedBefore = publisher.refused
        let duringOutage = try await HTTP.postMessage("\(cluster.nodes[0].baseURL)/rooms/outage/messages", user: "u", text: "while down")
        #expect(duringOutage.status == 503)
        #expect(duringOutage.json["error"] as? String == "unavailable")
        try await Task.sleep(for: .milliseconds(500))
        #expect(publisher.refused > refusedBefore, "the publisher's tries were refused while Redis was down")

        try await cluster.redis.start()
        for node in cluster.nodes {
            var ready = false
            let deadline = ContinuousClock.now + .seconds(10)
            while !ready, ContinuousClock.now < deadline {
                ready = try await HTTP.get("\(node.baseURL)/health/ready").status == 200
                if !ready { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(ready, "\(node.nodeID) ready again")
        }
        // And some after it.
        let afterOutage = acceptedCount() + 10
        #expect(await eventually { acceptedCount() >= afterOutage }, "POSTs accepted again after the outage")
        stop.set()
        await publishing.value

        let expected = publisher.ids("outage")
        #expect(expected.count >= 20)
        for subscriber in subscribers {
            #expect(await subscriber.waitForMessages(expected.count, timeout: .seconds(15)))
            try await Task.sleep(for: .milliseconds(100))
            #expect(!subscriber.ended, "the stream stayed open through the outage")
            #expect(subscriber.messageIDs == expected, "every 201 exactly once, in order")
        }
        // At least one reconnection (a loaded machine may take two: a gap fill that could not
        // read yet subscribes again), and up again.
        #expect(try await NodeAbuseTests.metric(cluster.nodes[0], "chat_relay_broker_reconnects_total") ?? 0 >= 1)
        #expect(try await NodeAbuseTests.metric(cluster.nodes[0], "chat_relay_broker_up") == 1)
    }

    @Test func aKilledNodesSubscribersResumeElsewhereAndLoseNothing() async throws {
        let cluster = try await Cluster.start()
        defer { cluster.kill() }
        let publisher = Publisher()
        let doomed = cluster.nodes[0]
        var subscribers: [SSEClient] = []
        for _ in 0..<3 { subscribers.append(try await SSEClient("\(doomed.baseURL)/rooms/crash/events")) }
        for index in 0..<10 { await publisher.post(cluster.nodes[1 + index % 2].baseURL, room: "crash", text: "a\(index)") }
        for subscriber in subscribers { #expect(await subscriber.waitForMessages(10)) }

        doomed.signal(SIGKILL)
        _ = await doomed.waitForExit(timeout: .seconds(5))
        for subscriber in subscribers { #expect(await subscriber.wait { $0.ended }) }
        // Messages keep coming while the subscribers are away.
        for index in 0..<10 { await publisher.post(cluster.nodes[1 + index % 2].baseURL, room: "crash", text: "b\(index)") }
        var resumed: [SSEClient] = []
        for (index, subscriber) in subscribers.enumerated() {
            let last = try #require(subscriber.messageIDs.last)
            resumed.append(
                try await SSEClient("\(cluster.nodes[1 + index % 2].baseURL)/rooms/crash/events", headers: [("Last-Event-ID", last)]))
        }
        for index in 0..<5 { await publisher.post(cluster.nodes[1 + index % 2].baseURL, room: "crash", text: "c\(index)") }
        let expected = publisher.ids("crash")
        #expect(expected.count == 25)
        for (before, after) in zip(subscribers, resumed) {
            #expect(await after.waitForMessages(15))
            #expect(before.messageIDs + after.messageIDs == expected)
        }
    }

    @Test func drainingOneNodeWhileTheOthersServe() async throws {
        let cluster = try await Cluster.start(arguments: ["--drain-timeout", "4"])
        defer { cluster.kill() }
        let publisher = Publisher()
        let draining = cluster.nodes[0]
        var subscribers: [SSEClient] = []
        for _ in 0..<4 { subscribers.append(try await SSEClient("\(draining.baseURL)/rooms/drain/events")) }
        for index in 0..<5 { await publisher.post(cluster.nodes[index % 3].baseURL, room: "drain", text: "a\(index)") }
        draining.signal(SIGTERM)
        // The others keep taking messages while the node drains.
        for index in 0..<10 {
            #expect(await publisher.post(cluster.nodes[1 + index % 2].baseURL, room: "drain", text: "b\(index)"))
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(await draining.waitForExit(timeout: .seconds(5)) == 0)
        for node in cluster.nodes.dropFirst() {
            #expect(try await HTTP.get("\(node.baseURL)/health/ready").status == 200)
        }
        var resumed: [SSEClient] = []
        for (index, subscriber) in subscribers.enumerated() {
            #expect(await subscriber.wait { $0.ended })
            #expect(subscriber.retry != nil)
            let last = try #require(subscriber.messageIDs.last)
            resumed.append(
                try await SSEClient("\(cluster.nodes[1 + index % 2].baseURL)/rooms/drain/events", headers: [("Last-Event-ID", last)]))
        }
        let expected = publisher.ids("drain")
        #expect(expected.count == 15)
        for (before, after) in zip(subscribers, resumed) {
            #expect(await after.waitForMessages(expected.count - before.messageIDs.count))
            #expect(before.messageIDs + after.messageIDs == expected)
        }
    }
}

/// Polls `condition` every `pause` until it holds or `timeout` passes; returns whether it held.
func eventually(
    timeout: Duration = .seconds(20), pause: Duration = .milliseconds(20), _ condition: () async -> Bool
) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: pause)
    }
    return await condition()
}

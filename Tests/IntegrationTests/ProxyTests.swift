import Foundation
import Synchronization
import TestSupport
import Testing

/// The deploy/ proxy configs, proven with the real nginx and HAProxy in front of three relay
/// processes on a real redis-server, all on loopback. The replicas share one port on 127.0.0.2–4
/// and one DNS name, as replicas of a compose service do.
@Suite struct ProxyTests {
    static let replicaName = "relay.test"
    static let addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]

    struct Topology {
        let redis: RedisServer
        let dns: LoopbackDNS
        var nodes: [RelayProcess]
        let proxy: ProxyServer
        let relayPort: Int

        static func start(_ kind: ProxyServer.Kind, drainTimeout: Int = 3, replicas: Int = 3, arguments: [String] = []) async throws
            -> Topology
        {
            let redis = try await RedisServer(appendOnly: false)
            let addresses = Array(ProxyTests.addresses.prefix(replicas))
            let dns = try await LoopbackDNS(name: replicaName, addresses: addresses)
            let relayPort = freeLoopbackPort()
            var nodes: [RelayProcess] = []
            for (index, address) in addresses.enumerated() {
                nodes.append(
                    try await Self.node(
                        index, address: address, port: relayPort, redis: redis, drainTimeout: drainTimeout, arguments: arguments))
            }
            let proxy = try await ProxyServer(kind, dnsPort: dns.port, replicas: "\(replicaName):\(relayPort)")
            return Topology(redis: redis, dns: dns, nodes: nodes, proxy: proxy, relayPort: relayPort)
        }

        /// - Parameter arguments: flags after the topology's own (a later flag wins).
        static func node(_ index: Int, address: String, port: Int, redis: RedisServer, drainTimeout: Int, arguments: [String] = [])
            async throws -> RelayProcess
        {
            // The proxies connect to the replicas from 127.0.0.1.
            try await RelayProcess(
                nodeID: "replica-\(index)", host: address, port: port,
                arguments: [
                    "--redis-url", redis.url, "--rate-limit", "0", "--trusted-proxies", "127.0.0.1", "--drain-timeout", "\(drainTimeout)",
                    "--retry-ms", "500",
                ] + arguments)
        }

        /// Restarts replica `index` on its address and port.
        mutating func restart(_ index: Int) async throws {
            nodes[index] = try await Self.node(index, address: nodes[index].host, port: relayPort, redis: redis, drainTimeout: 3)
        }

        func kill() {
            for node in nodes { node.kill() }
            proxy.kill()
            dns.kill()
            redis.killNow()
        }

        /// Waits until HAProxy's checks (or nginx's DNS) see every replica: a stream lands on each.
        func waitForEveryReplica() async throws {
            var seen = Set<String>()
            let deadline = ContinuousClock.now + .seconds(20)
            while seen.count < nodes.count, ContinuousClock.now < deadline {
                if let reply = try? await HTTP.get(proxy.baseURL + "/health/ready"), reply.status == 200,
                    let node = reply.header("X-Relay-Node")
                {
                    seen.insert(node)
                } else {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(seen.count == nodes.count, "replicas reached through \(proxy.kind): \(seen)")
        }
    }

    /// Opens a stream through the proxy, resuming after `lastEventID` if given.
    static func subscribe(_ proxy: ProxyServer, room: String, after lastEventID: String? = nil) async throws -> SSEClient {
        try await SSEClient(proxy.baseURL + "/rooms/\(room)/events", headers: lastEventID.map { [("Last-Event-ID", $0)] } ?? [])
    }

    static func post(_ proxy: ProxyServer, room: String, text: String) async throws -> HTTP.Reply {
        try await HTTP.postMessage(proxy.baseURL + "/rooms/\(room)/messages", user: "p", text: text)
    }

    @Test(arguments: ProxyServer.Kind.allCases)
    func theDeployConfigIsValidAsShippedAndAsSubstituted(kind: ProxyServer.Kind) async throws {
        let directory = NSTemporaryDirectory() + "chat-relay-validate-\(kind)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory + "/logs", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let shipped = packageRoot + (kind == .nginx ? "/deploy/nginx.conf" : "/deploy/haproxy.cfg")
        let asShipped = try await ProxyServer.validate(kind, configPath: shipped, directory: directory)
        #expect(asShipped.ok, "\(asShipped.output)")
        let substitutedPath = directory + "/substituted.conf"
        try await ProxyServer.config(kind, dnsPort: 5353, replicas: "relay.test:9000", listenPort: 18080).write(
            toFile: substitutedPath, atomically: true, encoding: .utf8)
        let substituted = try await ProxyServer.validate(kind, configPath: substitutedPath, directory: directory)
        #expect(substituted.ok, "\(substituted.output)")
    }

    @Test(arguments: ProxyServer.Kind.allCases)
    func subscribersAndPublishersSpreadByTheProxyGetEveryMessage(kind: ProxyServer.Kind) async throws {
        let topology = try await Topology.start(kind)
        defer { topology.kill() }
        try await topology.waitForEveryReplica()
        // Streams until every replica holds some (nginx starts each resolution at a random address).
        var subscribers: [SSEClient] = []
        var nodes = Set<String>()
        while nodes.count < 3, subscribers.count < 30 {
            let subscriber = try await Self.subscribe(topology.proxy, room: "spread")
            subscribers.append(subscriber)
            nodes.insert(subscriber.headers.first(name: "X-Relay-Node") ?? "")
        }
        #expect(nodes.count == 3, "streams spread over every replica: \(nodes)")
        #expect(subscribers.allSatisfy { $0.headers.first(name: "X-Request-ID")?.isEmpty == false })

        var ids: [String] = []
        var publishedVia = Set<String>()
        for index in 0..<30 {
            let reply = try await Self.post(topology.proxy, room: "spread", text: "m\(index)")
            try #require(reply.status == 201, "\(reply.status) \(reply.body)")
            ids.append(try #require(reply.json["id"] as? String))
            publishedVia.insert(reply.header("X-Relay-Node") ?? "")
        }
        #expect(publishedVia.count == 3, "POSTs spread over every replica: \(publishedVia)")
        for subscriber in subscribers {
            #expect(await subscriber.waitForMessages(30))
            #expect(subscriber.messageIDs == ids)
        }
    }

    /// The longest stream a node takes, 100 rooms of 64-character names, passes the shipped proxy
    /// configs, and so does its position when it resumes.
    @Test(arguments: ProxyServer.Kind.allCases)
    func aStreamOfTheMostRoomsPassesTheProxy(kind: ProxyServer.Kind) async throws {
        let topology = try await Topology.start(kind, replicas: 1)
        defer { topology.kill() }
        try await topology.waitForEveryReplica()
        let rooms = (0..<100).map { String(format: "%02d", $0) + String(repeating: "r", count: 62) }
        let path = "/events?" + rooms.map { "room=\($0)" }.joined(separator: "&")
        #expect(path.utf8.count > 6700)
        let stream = try await SSEClient(topology.proxy.baseURL + path, headers: [("Last-Event-ID", "0")])
        #expect(stream.status == 200)
        for room in [rooms[0], rooms[99]] {
            #expect(try await HTTP.postMessage(topology.proxy.baseURL + "/rooms/\(room)/messages", user: "p", text: "hi").status == 201)
        }
        #expect(await stream.waitForMessages(2))
        let position = try #require(stream.events.last { $0.type == "message" }?.lastEventID)
        #expect(position.hasPrefix("~"))
        stream.close()
        #expect(try await HTTP.postMessage(topology.proxy.baseURL + "/rooms/\(rooms[50])/messages", user: "p", text: "later").status == 201)
        let resumed = try await SSEClient(topology.proxy.baseURL + path, headers: [("Last-Event-ID", position)])
        #expect(resumed.status == 200)
        #expect(await resumed.waitForMessages(1))
        #expect(resumed.messages.map { $0["text"] as? String } == ["later"])
    }

    /// A proxy may hold a response's bytes back to send them with more (HAProxy without
    /// `option http-no-delay` holds every SSE event for about 200 ms): the deploy configs must not.
    /// One stream through the proxy and one straight to its only replica get the same messages;
    /// the proxied one's lag behind the direct one is what the proxy adds, whatever the machine's
    /// load does to both: a few milliseconds, or over 200 when the proxy holds events.
    @Test(arguments: ProxyServer.Kind.allCases)
    func eventsPassTheProxyWithoutBeingHeldBack(kind: ProxyServer.Kind) async throws {
        let topology = try await Topology.start(kind, replicas: 1)
        defer { topology.kill() }
        try await topology.waitForEveryReplica()
        let proxied = try await Self.subscribe(topology.proxy, room: "nodelay")
        let direct = try await SSEClient("http://\(topology.nodes[0].host):\(topology.relayPort)/rooms/nodelay/events")
        var lags: [Duration] = []
        for index in 0..<11 {
            let reply = try await HTTP.postMessage(
                "http://\(topology.nodes[0].host):\(topology.relayPort)/rooms/nodelay/messages", user: "p", text: "m\(index)")
            try #require(reply.status == 201, "\(reply.status) \(reply.body)")
            try #require(await direct.waitForMessages(index + 1, timeout: .seconds(5)))
            let arrived = ContinuousClock.now
            try #require(await proxied.waitForMessages(index + 1, timeout: .seconds(5)))
            lags.append(ContinuousClock.now - arrived)
        }
        let median = lags.sorted()[lags.count / 2]
        #expect(median < .milliseconds(100), "lag through \(kind) behind a direct stream: \(lags)")
    }

    @Test(arguments: ProxyServer.Kind.allCases)
    func failedAndDrainingReplicasLeaveRotationAndTheirSubscribersResumeThroughTheProxy(kind: ProxyServer.Kind) async throws {
        var topology = try await Topology.start(kind)
        defer { topology.kill() }
        try await topology.waitForEveryReplica()
        var subscribers: [SSEClient] = []
        for _ in 0..<9 { subscribers.append(try await Self.subscribe(topology.proxy, room: "failover")) }
        // A careful client: each message with an Idempotency-Key, retried until accepted.
        let publisher = Publisher()
        let proxy = topology.proxy
        let publishing = Task {
            for index in 0..<60 {
                #expect(await publisher.post(proxy.baseURL, room: "failover", text: "n\(index)"))
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        try await Task.sleep(for: .milliseconds(400))
        topology.nodes[0].signal(SIGTERM)
        topology.nodes[1].signal(SIGKILL)
        #expect(await topology.nodes[0].waitForExit(timeout: .seconds(5)) == 0)

        // Every stream of the stopped replicas ended; each resumes through the proxy with its last id.
        var resumed: [(before: SSEClient, after: SSEClient)] = []
        for subscriber in subscribers {
            let node = subscriber.headers.first(name: "X-Relay-Node")
            guard node == "replica-0" || node == "replica-1" else { continue }
            #expect(await subscriber.wait { $0.ended }, "stream on \(node ?? "?") ended")
            // Until the proxy has noticed both replicas are gone (a couple of seconds), a stream may
            // still be answered 503; a client retries, as the page does.
            var after = try await Self.subscribe(topology.proxy, room: "failover", after: subscriber.messageIDs.last ?? "0-0")
            for _ in 0..<20 where after.status == 503 {
                try await Task.sleep(for: .milliseconds(250))
                after = try await Self.subscribe(topology.proxy, room: "failover", after: subscriber.messageIDs.last ?? "0-0")
            }
            #expect(after.status == 200)
            #expect(after.headers.first(name: "X-Relay-Node") == "replica-2", "only the live replica takes new streams")
            resumed.append((subscriber, after))
        }
        #expect(resumed.count >= 2)
        await publishing.value
        let ids = publisher.ids("failover")
        #expect(ids.count == 60, "every message through the proxy was acknowledged despite the stopped replicas")
        for (before, after) in resumed {
            #expect(await after.waitForMessages(ids.count - before.messageIDs.count))
            #expect(before.messageIDs + after.messageIDs == ids, "nothing lost across the move")
        }
        for subscriber in subscribers where subscriber.headers.first(name: "X-Relay-Node") == "replica-2" {
            #expect(await subscriber.waitForMessages(ids.count))
            #expect(subscriber.messageIDs == ids)
        }

        // The restarted replicas return to rotation once ready.
        try await topology.restart(0)
        try await topology.restart(1)
        try await topology.waitForEveryReplica()
    }

    /// Open streams per replica, asked of each replica directly.
    static func streamsPerReplica(_ topology: Topology) async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for node in topology.nodes {
            counts[node.nodeID] = try await HTTP.get(node.baseURL + "/health/ready").json["connections"] as? Int ?? 0
        }
        return counts
    }

    @Test func twoBrowsersWhoseStreamsGoToDifferentReplicasChatThroughTheProxy() async throws {
        let topology = try await Topology.start(.nginx)
        defer { topology.kill() }
        try await topology.waitForEveryReplica()
        let driver = try await ChromeDriver()
        defer { driver.stop() }
        let connected = "return document.getElementById('status').textContent === 'connected'"

        let alice = try await driver.newSession()
        try await alice.open(topology.proxy.baseURL + "/?room=proxied")
        #expect(try await alice.wait(until: connected))
        let aliceNode = try #require(try await Self.streamsPerReplica(topology).first { $0.value == 1 }?.key)

        // Bob's page is reloaded until the proxy puts its stream on another replica.
        let bob = try await driver.newSession()
        var bobNode: String? = nil
        for _ in 0..<15 where bobNode == nil {
            try await bob.open(topology.proxy.baseURL + "/?room=proxied")
            #expect(try await bob.wait(until: connected))
            try await Task.sleep(for: .milliseconds(100))
            bobNode = try await Self.streamsPerReplica(topology).first { $0.key != aliceNode && $0.value == 1 }?.key
        }
        #expect(bobNode != nil, "the proxy never put the second page's stream on another replica")

        for (page, name) in [(alice, "alice"), (bob, "bob")] {
            try await page.clear("#name")
            try await page.type("#name", name)
        }
        try await alice.type("#text", "hello from \(aliceNode)\n")
        try await bob.type("#text", "hello from \(bobNode ?? "?")\n")
        let both = "return document.querySelectorAll('#messages li').length === 2"
        #expect(try await alice.wait(until: both))
        #expect(try await bob.wait(until: both))
        let shown = try await bob.run(ChatPageBrowserTests.shownTexts) as? [String]
        #expect(Set(shown ?? []) == ["hello from \(aliceNode)", "hello from \(bobNode ?? "?")"])
        await alice.close()
        await bob.close()
    }

    /// A message POST through `proxy` from the loopback address `source`, on a connection of its
    /// own; returns the status.
    static func post(_ proxy: ProxyServer, from source: String, forwardedFor: String?) async -> Int? {
        let body = "{\"user\":\"u\",\"text\":\"t\"}"
        let forwarded = forwardedFor.map { "X-Forwarded-For: \($0)\r\n" } ?? ""
        guard let socket = try? RawSocket(port: proxy.port, from: source, receiveBuffer: 65536),
            (try? socket.send(
                "POST /rooms/limited/messages HTTP/1.1\r\nHost: t\r\n\(forwarded)Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
            )) != nil
        else { return nil }
        let answer = await socket.receive(until: { $0.hasSuffix("}") }, timeout: .seconds(10))
        socket.close()
        return Int(answer.dropFirst("HTTP/1.1 ".count).prefix(3))
    }

    /// The rate limit behind the shipped proxy configs: a client counts as the address the proxy
    /// saw, whatever it writes in X-Forwarded-For, and two clients behind one proxy are counted
    /// apart. One replica, so that one node's buckets see every POST.
    @Test(arguments: ProxyServer.Kind.allCases)
    func spoofedForwardedForHopsDoNotEscapeTheRateLimitBehindTheProxy(kind: ProxyServer.Kind) async throws {
        // A burst of 2, then one POST per 10 s: a refill cannot happen during the test.
        let topology = try await Topology.start(kind, replicas: 1, arguments: ["--rate-limit", "0.1", "--rate-burst", "2"])
        defer { topology.kill() }
        try await topology.waitForEveryReplica()
        let (mallory, alice) = ("127.0.0.5", "127.0.0.6")
        var statuses: [Int?] = []
        for index in 0..<6 {
            // As in the issue: a made-up address, and one that looks like a real client's.
            statuses.append(await Self.post(topology.proxy, from: mallory, forwardedFor: "10.9.9.\(index), 203.0.113.7"))
        }
        #expect(statuses == [201, 201, 429, 429, 429, 429], "one client writing X-Forwarded-For through \(kind)")
        #expect(await Self.post(topology.proxy, from: mallory, forwardedFor: nil) == 429)
        // Another client behind the same proxy has a bucket of its own, even when it claims to be
        // the first one.
        #expect(await Self.post(topology.proxy, from: alice, forwardedFor: mallory) == 201)
        #expect(await Self.post(topology.proxy, from: alice, forwardedFor: nil) == 201)
        #expect(await Self.post(topology.proxy, from: alice, forwardedFor: nil) == 429)
    }

    /// `method path` through `proxy` from `source` on a connection of its own: the whole answer.
    static func request(_ proxy: ProxyServer, _ method: String, _ path: String, from source: String, headers: String = "") async
        -> String
    {
        guard let socket = try? RawSocket(port: proxy.port, from: source, receiveBuffer: 65536),
            (try? socket.send("\(method) \(path) HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\(headers)Connection: close\r\n\r\n")) != nil
        else { return "" }
        defer { socket.close() }
        return await socket.receive(until: { _ in false }, timeout: .seconds(10))
    }

    /// The shipped proxies keep /metrics to the operator, set X-Forwarded-Proto themselves (the
    /// relays mark the session cookie Secure on its word), and turn away one address's flood of
    /// costly requests (stream opens, history, presence, /auth/) before it reaches the relays.
    @Test(arguments: ProxyServer.Kind.allCases)
    func theProxiesKeepMetricsInsideSetTheSchemeAndBoundEachClient(kind: ProxyServer.Kind) async throws {
        let topology = try await Topology.start(
            kind, replicas: 1,
            arguments: ["--auth", "jwt", "--jwt-secret-file", try AccessControlTests.secretFile(), "--public-rooms", "open"])
        defer { topology.kill() }
        try await topology.waitForEveryReplica()
        let metrics = await Self.request(topology.proxy, "GET", "/metrics", from: "127.0.0.7")
        #expect(metrics.hasPrefix("HTTP/1.1 404"), "\(metrics)")
        #expect(!metrics.contains("chat_relay_"))

        // A client that says it came over TLS did not: the cookie is not Secure.
        let token = try await AccessControlTests.token("alice")
        let session = await Self.request(
            topology.proxy, "POST", "/auth/session", from: "127.0.0.7",
            headers: "Authorization: Bearer \(token)\r\nX-Forwarded-Proto: https\r\n")
        #expect(session.hasPrefix("HTTP/1.1 204"), "\(session)")
        // HAProxy writes header names in lower case.
        #expect(session.lowercased().contains("set-cookie: chat_relay_token=") && !session.contains("Secure"), "\(session)")

        // 150 history reads at once from one address: the proxy answers 429 itself (no relay
        // named) to some; another address is served meanwhile.
        var byProxy = 0
        for _ in 0..<150 {
            let answer = await Self.request(topology.proxy, "GET", "/rooms/open/messages", from: "127.0.0.8")
            if answer.hasPrefix("HTTP/1.1 429"), !answer.lowercased().contains("x-relay-node:") { byProxy += 1 }
        }
        #expect(byProxy > 0, "refused by \(kind) itself")
        #expect(await Self.request(topology.proxy, "GET", "/rooms/open/messages", from: "127.0.0.9").hasPrefix("HTTP/1.1 200"))
    }
}

import Foundation
import RedisClient
import Synchronization
import TestSupport
import Testing

@Suite struct RedisKeySlotTests {
    @Test func slotsFollowTheClusterSpecification() {
        // The specification's test vector, and slots redis-cli's CLUSTER KEYSLOT gives.
        #expect(RedisKeySlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(RedisKeySlot.of("foo") == 12182)
        #expect(RedisKeySlot.of("bar") == 5061)
        #expect(RedisKeySlot.of("") == 0)
        // Hash tags: the first {…} that is not empty.
        #expect(RedisKeySlot.of("{user1000}.following") == RedisKeySlot.of("user1000"))
        #expect(RedisKeySlot.of("{user1000}.followers") == RedisKeySlot.of("user1000"))
        #expect(RedisKeySlot.of("foo{}{bar}") == Int(RedisKeySlot.crc16(Array("foo{}{bar}".utf8)) & 0x3FFF))
        #expect(RedisKeySlot.of("foo{{bar}}zap") == RedisKeySlot.of("{bar"))
        #expect(RedisKeySlot.of("foo{bar}{zap}") == RedisKeySlot.of("bar"))
        #expect(RedisKeySlot.of("foo{bar") == Int(RedisKeySlot.crc16(Array("foo{bar".utf8)) & 0x3FFF))
    }

    @Test func redirectionsParse() {
        #expect(RedisRedirect(error: "MOVED 3999 127.0.0.1:6381") == nil ? false : true)
        let moved = RedisRedirect(error: "MOVED 3999 127.0.0.1:6381")
        #expect(moved?.kind == .moved && moved?.slot == 3999 && moved?.host == "127.0.0.1" && moved?.port == 6381)
        let ask = RedisRedirect(.error("ASK 16383 ::1:7000"))
        #expect(ask?.kind == .ask && ask?.slot == 16383 && ask?.host == "::1" && ask?.port == 7000)
        #expect(RedisRedirect(error: "MOVED 3999 :6381")?.host == "")
        for text in ["ERR unknown command", "MOVED 16384 127.0.0.1:1", "MOVED x 127.0.0.1:1", "MOVED 1 127.0.0.1", "ASK 1 h:0"] {
            #expect(RedisRedirect(error: text) == nil, "\(text)")
        }
        #expect(RedisRedirect(.bulk(Array("MOVED 1 h:1".utf8))) == nil)
    }

    @Test func aSlotMapFindsEachSlotsMaster() throws {
        let reply = RedisReply.array([
            .array([.integer(5461), .integer(10922), .array([.bulk(Array("".utf8)), .integer(7001), .bulk(Array("b".utf8))])]),
            .array([
                .integer(0), .integer(5460), .array([.bulk(Array("127.0.0.1".utf8)), .integer(7000)]),
                .array([.bulk(Array("127.0.0.1".utf8)), .integer(7003)]),
            ]),
        ])
        let map = try RedisSlotMap(clusterSlots: reply, answeredBy: .init(host: "10.0.0.9", port: 7001))
        #expect(map.master(of: 0) == .init(host: "127.0.0.1", port: 7000))
        #expect(map.master(of: 5460)?.port == 7000)
        #expect(map.master(of: 5461) == .init(host: "10.0.0.9", port: 7001, id: "b"), "an empty host is the node that answered")
        #expect(map.master(of: 10923) == nil)
        #expect(!map.coversAllSlots)
        #expect(map.shards[0].replicas == [.init(host: "127.0.0.1", port: 7003)])
        #expect(map.masters.map(\.port) == [7000, 7001])
        #expect(throws: RedisError.self) { try RedisSlotMap(clusterSlots: .array([.integer(1)]), answeredBy: .init(host: "h", port: 1)) }
    }
}

/// Against a real Redis Cluster of three masters and three replicas on loopback: the slot map,
/// and `RedisClusterClient`'s routing, a slot migrated by hand (ASK, then MOVED), a live
/// resharding under writes, and a master killed (its replica takes over). One cluster at a time:
/// six servers each are load enough for a machine that runs the other suites beside them.
@Suite(.serialized) struct RedisClusterTests {
    @Test(.timeLimit(.minutes(2))) func theSlotMapOfARealClusterSendsEveryKeyToTheNodeThatServesIt() async throws {
        let cluster = try await RedisCluster()
        defer { cluster.killNow() }
        let seed = RedisClient(configuration: .init(url: try RedisURL(cluster.seedURL)))
        seed.start()
        defer { seed.stop() }
        let seedNode = RedisSlotMap.Node(host: "127.0.0.1", port: cluster.servers[0].port)
        let map = try RedisSlotMap(clusterSlots: try await seed.command(["CLUSTER", "SLOTS"]), answeredBy: seedNode)
        #expect(map.coversAllSlots)
        #expect(map.masters.count == 3)
        #expect(map.shards.allSatisfy { $0.replicas.count == 1 })
        #expect(Set(try await cluster.masters().map(\.port)) == Set(map.masters.map(\.port)))

        var clients: [Int: RedisClient] = [:]
        for master in map.masters {
            let client = RedisClient(configuration: .init(url: try RedisURL("redis://\(master.host):\(master.port)")))
            client.start()
            clients[master.port] = client
        }
        defer { for client in clients.values { client.stop() } }
        for index in 0..<200 {
            let key = "key-\(index)-\(UInt32.random(in: 0...UInt32.max))"
            let slot = RedisKeySlot.of(key)
            #expect(try await seed.command(["CLUSTER", "KEYSLOT", RedisArgument(key)]).integer == Int64(slot), "\(key)")
            let owner = try #require(map.master(of: slot))
            #expect(try await clients[owner.port]!.command(["SET", RedisArgument(key), "v"]).string == "OK")
            // Any other master redirects to the owner, naming the slot.
            let other = try #require(map.masters.first { $0 != owner })
            let redirect = try #require(RedisRedirect(try await clients[other.port]!.command(["GET", RedisArgument(key)])))
            #expect(redirect.kind == .moved && redirect.slot == slot && redirect.port == owner.port)
        }
    }

    func clusterClient(_ cluster: RedisCluster) throws -> RedisClusterClient {
        RedisClusterClient(configuration: .init(seeds: [try RedisURL(cluster.seedURL)]))
    }

    /// The node id of the server on `port`.
    func nodeID(_ cluster: RedisCluster, port: Int) async throws -> String {
        let server = try #require(cluster.servers.first { $0.port == port })
        return try await cluster.cli(server, ["CLUSTER", "MYID"])
    }

    @Test(.timeLimit(.minutes(2))) func followsASlotMigratedKeyByKey() async throws {
        let cluster = try await RedisCluster()
        defer { cluster.killNow() }
        let client = try clusterClient(cluster)
        defer { client.stop() }
        let (moved, stays) = ("{room-7}:moved", "{room-7}:stays")
        let slot = RedisKeySlot.of(moved)
        #expect(slot == RedisKeySlot.of(stays))
        #expect(try await client.command(["SET", RedisArgument(moved), "a"], slot: slot).string == "OK")
        #expect(try await client.command(["SET", RedisArgument(stays), "b"], slot: slot).string == "OK")

        let map = try #require(client.slotMap)
        let source = try #require(map.master(of: slot))
        let target = try #require(map.masters.first { $0 != source })
        let sourceServer = try #require(cluster.servers.first { $0.port == source.port })
        let targetServer = try #require(cluster.servers.first { $0.port == target.port })
        let (sourceID, targetID) = (try await nodeID(cluster, port: source.port), try await nodeID(cluster, port: target.port))
        #expect(try await cluster.cli(targetServer, ["CLUSTER", "SETSLOT", "\(slot)", "IMPORTING", sourceID]) == "OK")
        #expect(try await cluster.cli(sourceServer, ["CLUSTER", "SETSLOT", "\(slot)", "MIGRATING", targetID]) == "OK")
        #expect(try await cluster.cli(sourceServer, ["MIGRATE", "127.0.0.1", "\(target.port)", moved, "0", "5000"]) == "OK")

        // Mid-migration: each key answered where it is, in one pipeline.
        let replies = try await client.pipeline([["GET", RedisArgument(moved)], ["GET", RedisArgument(stays)]], slot: slot)
        #expect(replies.map(\.string) == ["a", "b"])

        // The migration ends: the slot is the target's, the source answers MOVED, the map follows.
        #expect(try await cluster.cli(sourceServer, ["MIGRATE", "127.0.0.1", "\(target.port)", stays, "0", "5000"]) == "OK")
        for server in try await cluster.masters() {
            _ = try await cluster.cli(server, ["CLUSTER", "SETSLOT", "\(slot)", "NODE", targetID])
        }
        #expect(try await client.command(["GET", RedisArgument(stays)], slot: slot).string == "b")
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await client.refreshSlotMap().master(of: slot) == target)
    }

    /// A sharded subscriber on the master of a channel's slot gets what SPUBLISH sends there (from
    /// a script too, beside keys of the same hash tag), and hears when the slot moves away.
    @Test(.timeLimit(.minutes(2))) func shardedSubscriptionsFollowTheirSlot() async throws {
        let cluster = try await RedisCluster()
        defer { cluster.killNow() }
        let client = try clusterClient(cluster)
        defer { client.stop() }
        let channel = "p:events:{room-3}"
        let slot = RedisKeySlot.of(channel)
        let map = try await client.refreshSlotMap()
        let owner = try #require(map.master(of: slot))
        let received = Received()
        let moved = Mutex<[String]>([])
        var configuration = RedisSubscriber.Configuration(url: try RedisURL("redis://\(owner.host):\(owner.port)"), channels: [])
        configuration.sharded = true
        let subscriber = startedSubscriber(
            configuration, reporting: received,
            onMoved: { channel in
                moved.withLock { $0.append(channel) }
            })
        defer { subscriber.stop() }
        #expect(await received.wait { $0.subscribed == 1 })
        try await subscriber.listen(channel).get()
        // A channel of a slot another node serves: refused with MOVED, reported as moved.
        let elsewhere = try #require((0..<100).map { "p:events:{other-\($0)}" }.first { map.master(of: RedisKeySlot.of($0)) != owner })
        await #expect(throws: RedisError.self) { try await subscriber.listen(elsewhere).get() }
        #expect(moved.withLock { $0 } == [elsewhere])
        moved.withLock { $0 = [] }
        #expect(try await client.command(["SPUBLISH", RedisArgument(channel), "direct"], slot: slot).integer == 1)
        let script = "redis.call('XADD', KEYS[1], '*', 'm', ARGV[2]); return redis.call('SPUBLISH', ARGV[1], ARGV[2])"
        let published = try await client.command(
            ["EVAL", RedisArgument(script), "1", "p:room:{room-3}", RedisArgument(channel), "scripted"], slot: slot)
        #expect(published.integer == 1)
        #expect(await received.wait { $0.messages == ["direct", "scripted"] })

        // The slot goes to another master: the subscriber is told, and keeps the channel to move.
        let target = try #require(map.masters.first { $0 != owner })
        let targetID = try await nodeID(cluster, port: target.port)
        for server in try await cluster.masters() {
            _ = try await cluster.cli(server, ["CLUSTER", "SETSLOT", "\(slot)", "NODE", targetID])
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while moved.withLock({ $0.isEmpty }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(moved.withLock { $0 } == [channel])
        #expect(try await subscriber.listening().get().contains(channel))
    }

    /// A cluster that is down for a moment (a master with no replica killed, so its slots are
    /// unserved and every node answers CLUSTERDOWN, then started again): a write issued meanwhile,
    /// to a live master's slot, waits and succeeds once the cluster is whole, within the client's
    /// patience.
    @Test(.timeLimit(.minutes(2))) func aWriteWaitsOutAShortClusterDown() async throws {
        let cluster = try await RedisCluster(masters: 3, replicasPerMaster: 0)
        defer { cluster.killNow() }
        var configuration = RedisClusterClient.Configuration(seeds: [try RedisURL(cluster.seedURL)])
        configuration.failoverPatience = .seconds(15)
        let client = RedisClusterClient(configuration: configuration)
        defer { client.stop() }
        let map = try await client.refreshSlotMap()
        let victim = try #require(cluster.servers.first { $0.port == map.masters[0].port })
        let live = try #require(cluster.servers.first { $0.port == map.masters[1].port })
        let key = try #require((0..<100_000).lazy.map { "{k\($0)}" }.first { map.master(of: RedisKeySlot.of($0)) == map.masters[1] })
        #expect(try await client.command(["INCR", RedisArgument(key)], slot: RedisKeySlot.of(key)).integer == 1)

        await victim.kill()
        let deadline = ContinuousClock.now + .seconds(20)
        while try await !cluster.cli(live, ["CLUSTER", "INFO"]).contains("cluster_state:fail"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(try await cluster.cli(live, ["INCR", key]).contains("CLUSTERDOWN"), "the cluster is down")
        async let write = client.command(["INCR", RedisArgument(key)], slot: RedisKeySlot.of(key))
        try await Task.sleep(for: .seconds(1))
        try await victim.start()
        let reply = try await write
        #expect(reply.integer == 2, "the write waited for the cluster: \(reply)")
    }

    @Test(.timeLimit(.minutes(3))) func writesGoOnThroughALiveReshardAndAFailover() async throws {
        // A node timeout of 2 s, not 1: under the full suite's load a starved node once missed
        // its pings for a second during the reshard, was marked failed, and the cluster answered
        // CLUSTERDOWN to every write. The failover below still happens within the 6 s it is given.
        let cluster = try await RedisCluster(nodeTimeoutMilliseconds: 2000)
        defer { cluster.killNow() }
        let client = try clusterClient(cluster)
        defer { client.stop() }
        let keys = (0..<200).map { "{r\($0)}:counter" }
        _ = try await client.refreshSlotMap()

        // Writers increment every key while redis-cli moves 1000 slots from one master to another.
        let log = WriteLog()
        let writers = Task {
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<2 {
                    group.addTask {
                        var index = worker
                        while !log.stop.isSet {
                            let key = keys[index % keys.count]
                            index += 2
                            do {
                                let reply = try await client.command(["INCR", RedisArgument(key)], slot: RedisKeySlot.of(key))
                                if reply.integer != nil {
                                    log.counts.withLock { $0[key, default: 0] += 1 }
                                } else {
                                    log.failures.withLock { $0.append("\(reply)") }
                                }
                            } catch {
                                log.failures.withLock { $0.append("\(error)") }
                            }
                            // Steady writes, not a busy loop: the suites beside this one share the cores.
                            try? await Task.sleep(for: .milliseconds(2))
                        }
                    }
                }
            }
        }
        let map = try #require(client.slotMap)
        let (from, to) = (map.masters[0], map.masters[1])
        let reshard = try await ChildProcess.run(
            "/usr/bin/redis-cli",
            [
                "--cluster", "reshard", "127.0.0.1:\(from.port)", "--cluster-from", try await nodeID(cluster, port: from.port),
                "--cluster-to", try await nodeID(cluster, port: to.port), "--cluster-slots", "1000", "--cluster-yes",
                "--cluster-pipeline", "20",
            ], timeout: .seconds(90))
        #expect(reshard.status == 0, "\(reshard.errors)")
        try await Task.sleep(for: .milliseconds(300))
        let duringReshard = log.failures.withLock { $0 }
        #expect(duringReshard.isEmpty, "\(duringReshard.count) writes failed during the reshard: \(duringReshard.prefix(3))")
        #expect(try await client.refreshSlotMap().shards.filter { $0.master == to }.reduce(0) { $0 + $1.slots.count } >= 6461)

        // A master killed: its replica takes over within a few seconds; writes wait and go on.
        let victim = try #require(cluster.servers.first { $0.port == from.port })
        victim.killNow()
        try await Task.sleep(for: .seconds(6))
        log.stop.set()
        await writers.value
        let lost = log.failures.withLock { $0 }
        // A write to the dead master may fail once its patience (5 s) ran out before the
        // promotion; the rest went on. Every key's counter equals the writes that got a reply.
        #expect(lost.count < 20, "failures during the failover: \(lost.prefix(5))")
        for key in keys {
            let value = try await client.command(["GET", RedisArgument(key)], slot: RedisKeySlot.of(key))
            #expect(Int(value.string ?? "0") ?? -1 >= log.counts.withLock { $0[key] ?? 0 }, "\(key)")
        }
    }
}

/// What the writers of a test did, shared between their tasks.
final class WriteLog: Sendable {
    let counts = Mutex<[String: Int]>([:])
    let failures = Mutex<[String]>([])
    let stop = StopSignal()
}

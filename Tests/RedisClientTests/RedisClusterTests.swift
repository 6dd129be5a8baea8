import Foundation
import RedisClient
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

/// Against a real Redis Cluster of three masters and three replicas on loopback.
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
        #expect(Set(try cluster.masters().map(\.port)) == Set(map.masters.map(\.port)))

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
}

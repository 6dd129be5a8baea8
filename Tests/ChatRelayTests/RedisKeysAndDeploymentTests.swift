import ChatRelay
import RedisClient
import Testing

/// Where the Redis broker puts a room, standalone and on a cluster, and how `--redis-url` names one.
@Suite struct RedisKeysAndDeploymentTests {
    let room = RoomName("lobby-7")!

    @Test func standaloneKeysKeepTheirPlainNames() {
        let keys = RedisKeys(prefix: "p")
        #expect(keys.stream(room) == "p:room:lobby-7")
        #expect(keys.trimmed(room) == "p:trimmed:lobby-7")
        #expect(keys.idempotency(room, "k") == "p:idem:lobby-7:k")
        #expect(keys.channel(room) == "p:events:lobby-7")
        #expect(keys.room(ofChannel: "p:events:lobby-7") == room)
        #expect(keys.room(ofChannel: "q:events:lobby-7") == nil)
    }

    @Test func onAClusterEveryKeyOfARoomAndItsChannelShareTheRoomsSlot() {
        let keys = RedisKeys(prefix: "p", hashTags: true)
        #expect(keys.stream(room) == "p:room:{lobby-7}")
        #expect(keys.channel(room) == "p:events:{lobby-7}")
        let slot = RedisKeySlot.of("lobby-7")
        for key in [keys.stream(room), keys.trimmed(room), keys.idempotency(room, "a:b}{c"), keys.channel(room)] {
            #expect(RedisKeySlot.of(key) == slot, "\(key)")
        }
        #expect(keys.slot(room) == slot)
        #expect(keys.room(ofChannel: keys.channel(room)) == room)
        #expect(keys.room(ofChannel: "p:events:lobby-7") == nil, "a plain channel is not a cluster room's")
        // Rooms spread over the slots (they do not all hash to one node).
        let slots = Set((0..<100).map { keys.slot(RoomName("room-\($0)")!) })
        #expect(slots.count > 90)
    }

    @Test func oneAddressIsOneRedisAndSeveralAreACluster() throws {
        #expect(try RedisDeployment("redis://127.0.0.1:6379/2") == .standalone(RedisURL(host: "127.0.0.1", port: 6379, database: 2)))
        let cluster = try RedisDeployment("redis://:s3cret@10.0.0.1:7000, 10.0.0.2:7001,redis://10.0.0.3:7002")
        guard case .cluster(let seeds) = cluster else {
            Issue.record("not a cluster: \(cluster)")
            return
        }
        #expect(seeds.map(\.host) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
        #expect(seeds.map(\.port) == [7000, 7001, 7002])
        #expect(seeds.map(\.password) == ["s3cret", "s3cret", nil], "a bare host:port takes the first address's password")
        #expect(try RedisDeployment("redis://127.0.0.1:7000", cluster: true).isCluster)
        #expect(throws: RedisError.self) { try RedisDeployment("redis://a:7000/1,b:7001") }
        #expect(throws: RedisError.self) { try RedisDeployment("redis://a:7000,b:port") }
        #expect(throws: RedisError.self) { try RedisDeployment(" , ") }
    }
}

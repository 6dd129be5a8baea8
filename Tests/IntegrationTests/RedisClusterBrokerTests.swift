import Foundation
import Synchronization
import TestSupport
import Testing

/// Relay nodes on a real Redis Cluster of three masters and three replicas: rooms spread over the
/// masters by hash slot, streams on every node, and a master killed under load.
@Suite(.serialized) struct RedisClusterBrokerTests {
    /// A Redis Cluster and `count` relay nodes on it, each given two seeds.
    struct Topology {
        let cluster: RedisCluster
        let nodes: [RelayProcess]

        static func start(nodes count: Int = 3, arguments: [String] = []) async throws -> Topology {
            let cluster = try await RedisCluster()
            let seeds = "redis://127.0.0.1:\(cluster.servers[0].port),127.0.0.1:\(cluster.servers[1].port)"
            var nodes: [RelayProcess] = []
            for index in 0..<count {
                nodes.append(
                    try await RelayProcess(
                        nodeID: "shard-node-\(index)", arguments: ["--redis-url", seeds, "--rate-limit", "0"] + arguments))
            }
            for node in nodes {
                let ready = await eventually(timeout: .seconds(20)) {
                    (try? await HTTP.get(node.baseURL + "/health/ready"))?.status == 200
                }
                #expect(ready, "\(node.nodeID) ready on the cluster; log:\n\(node.log())")
            }
            return Topology(cluster: cluster, nodes: nodes)
        }

        func kill() {
            for node in nodes { node.kill() }
            cluster.killNow()
        }

        /// The master that serves `room`'s keys now.
        func master(of room: String) async throws -> RedisServer {
            let slot = try await cluster.cli(cluster.servers[0], ["CLUSTER", "KEYSLOT", "chat-relay:room:{\(room)}"])
            let nodes = try await cluster.cli(cluster.servers[0], ["CLUSTER", "NODES"])
            let slotNumber = Int(slot) ?? -1
            for line in nodes.split(separator: "\n") where line.contains("master") && !line.contains("fail") {
                let fields = line.split(separator: " ")
                let port = Int(fields[1].split(separator: ":")[1].split(separator: "@")[0]) ?? -1
                for range in fields.dropFirst(8) {
                    let bounds = range.split(separator: "-").compactMap { Int($0) }
                    let (low, high) = bounds.count == 2 ? (bounds[0], bounds[1]) : (bounds.first ?? -1, bounds.first ?? -1)
                    if (low...high).contains(slotNumber), let server = cluster.servers.first(where: { $0.port == port }) {
                        return server
                    }
                }
            }
            throw RelayProcessError.notReady(log: "no master serves slot \(slot):\n\(nodes)")
        }
    }

    /// Rooms whose keys land on every master (found by asking the cluster for their slots).
    static func roomsOnEveryMaster(_ topology: Topology, perMaster: Int) async throws -> [String] {
        var byMaster: [Int: [String]] = [:]
        var index = 0
        while byMaster.count < 3 || byMaster.values.contains(where: { $0.count < perMaster }) {
            let room = "spread-\(index)"
            index += 1
            let port = try await topology.master(of: room).port
            if byMaster[port, default: []].count < perMaster { byMaster[port, default: []].append(room) }
        }
        return byMaster.values.flatMap { $0 }
    }

    @Test(.timeLimit(.minutes(3))) func threeNodesChatInRoomsSpreadOverTheMasters() async throws {
        let topology = try await Topology.start()
        defer { topology.kill() }
        let rooms = try await Self.roomsOnEveryMaster(topology, perMaster: 2)
        // Two streams per room, on different nodes.
        var streams: [(room: String, client: SSEClient)] = []
        for (index, room) in rooms.enumerated() {
            for offset in 0..<2 {
                let node = topology.nodes[(index + offset) % 3]
                streams.append((room, try await SSEClient("\(node.baseURL)/rooms/\(room)/events")))
            }
        }
        let publisher = Publisher()
        for round in 0..<5 {
            for (index, room) in rooms.enumerated() {
                #expect(await publisher.post(topology.nodes[(index + round) % 3].baseURL, room: room, text: "\(room) \(round)"))
            }
        }
        for (room, client) in streams {
            #expect(await client.waitForMessages(5), "\(room)")
            #expect(client.messageIDs == publisher.ids(room), "\(room): every message once, in order, whichever node took it")
        }
        #expect(publisher.refused == 0)

        // A room's stream, marker and channel share the room's hash slot, on the master of its slot.
        let room = rooms[0]
        let master = try await topology.master(of: room)
        #expect(try await topology.cluster.cli(master, ["XLEN", "chat-relay:room:{\(room)}"]) == "5")
        #expect(try await topology.cluster.cli(master, ["EXISTS", "chat-relay:trimmed:{\(room)}"]) == "1")
        #expect(try await topology.cluster.cli(master, ["PUBSUB", "SHARDNUMSUB", "chat-relay:events:{\(room)}"]).hasSuffix("2"))

        // An idempotent retry on another node gets the first message back, not a second one.
        let key = [("Idempotency-Key", "once-\(room)")]
        let first = try await HTTP.postMessage("\(topology.nodes[0].baseURL)/rooms/\(room)/messages", user: "u", text: "once", headers: key)
        let again = try await HTTP.postMessage("\(topology.nodes[1].baseURL)/rooms/\(room)/messages", user: "u", text: "once", headers: key)
        #expect(first.status == 201)
        #expect(again.status == 200)
        #expect(first.json["id"] as? String == again.json["id"] as? String)

        // History reads from the room's master.
        let history = try await HTTP.get("\(topology.nodes[2].baseURL)/rooms/\(room)/messages?limit=10")
        #expect((history.json["messages"] as? [[String: Any]])?.count == 6)

        // Every node reaches all three masters.
        for node in topology.nodes {
            let metrics = try await HTTP.get(node.baseURL + "/metrics").body
            let shards = metrics.split(separator: "\n").filter { $0.hasPrefix("chat_relay_redis_shard_up{") }
            #expect(shards.count == 3 && shards.allSatisfy { Double($0.split(separator: " ").last ?? "") == 1 }, "\(shards)")
            #expect(metrics.contains("chat_relay_redis_slot_map_refreshes_total"))
        }
    }

    @Test(.timeLimit(.minutes(3))) func aKilledMastersRoomsComeBackOnItsReplicaAndStreamsGoOn() async throws {
        let topology = try await Topology.start()
        defer { topology.kill() }
        let rooms = try await Self.roomsOnEveryMaster(topology, perMaster: 1)
        var streams: [(room: String, client: SSEClient)] = []
        for room in rooms {
            for node in topology.nodes {
                streams.append((room, try await SSEClient("\(node.baseURL)/rooms/\(room)/events")))
            }
        }
        let publisher = Publisher()
        let stop = StopSignal()
        let publishing = Task {
            await withTaskGroup(of: Void.self) { group in
                for (index, room) in rooms.enumerated() {
                    group.addTask {
                        var count = 0
                        while !stop.isSet {
                            await publisher.post(topology.nodes[(index + count) % 3].baseURL, room: room, text: "\(room) \(count)")
                            count += 1
                            try? await Task.sleep(for: .milliseconds(20))
                        }
                    }
                }
            }
        }
        let victimRoom = rooms[0]
        #expect(await eventually { rooms.allSatisfy { publisher.count($0) >= 10 } }, "POSTs accepted before the kill")
        let victim = try await topology.master(of: victimRoom)
        let beforeKill = publisher.ids(victimRoom)
        try await Task.sleep(for: .milliseconds(500))  // replicas have what was acknowledged before
        victim.killNow()
        let killedAt = ContinuousClock.now
        let acknowledgedAtKill = Set(publisher.ids(victimRoom))

        // Readiness says the node cannot reach a master while the replica is being promoted.
        let unready = await eventually(timeout: .seconds(5), pause: .milliseconds(50)) {
            (try? await HTTP.get(topology.nodes[0].baseURL + "/health/ready"))?.status == 503
        }
        #expect(unready, "readiness 503 while a master is unreachable")
        // The replica takes over; POSTs to the dead master's rooms are refused meanwhile and then
        // accepted again, within seconds.
        let countAtKill = publisher.count(victimRoom)
        #expect(await eventually(timeout: .seconds(30)) { publisher.count(victimRoom) >= countAtKill + 10 }, "the room takes POSTs again")
        let recovered = ContinuousClock.now - killedAt
        for node in topology.nodes {
            #expect(await eventually(timeout: .seconds(20)) { (try? await HTTP.get(node.baseURL + "/health/ready"))?.status == 200 })
        }
        let otherRoomsAtRecovery = rooms.dropFirst().map { publisher.count($0) }
        #expect(await eventually { zip(rooms.dropFirst(), otherRoomsAtRecovery).allSatisfy { publisher.count($0) >= $1 + 5 } })
        stop.set()
        await publishing.value

        for (room, client) in streams {
            let accepted = publisher.ids(room)
            // Everything acknowledged arrives once, in order. Redis replicates asynchronously: a
            // message acknowledged in the instant before its master died may be lost with it
            // (`--redis-min-replicas-ack` is what closes that window), so the victim's room is
            // allowed to miss those, and only those.
            let complete = await client.wait(timeout: .seconds(15)) { Set($0.messageIDs).isSuperset(of: accepted) }
            let received = client.messageIDs
            #expect(received == received.sorted(by: messageIDPrecedes), "\(room): in order")
            #expect(Set(received).count == received.count, "\(room): no duplicate")
            if room == victimRoom {
                #expect(Set(received).isSuperset(of: beforeKill), "\(room): everything acknowledged well before the kill")
                let missing = accepted.filter { !received.contains($0) }
                // Only what was acknowledged before the kill can have died with the master: what
                // the new master acknowledged reaches every stream, which proves the streams'
                // channels followed the slot to it.
                #expect(missing.allSatisfy { acknowledgedAtKill.contains($0) }, "\(room): lost after the failover: \(missing)")
                #expect(missing.count <= 5, "\(room): \(missing.count) lost in the failover window")
            } else {
                #expect(complete, "\(room): every acknowledged message; got \(received.count) of \(accepted.count)")
            }
            #expect(!client.ended, "\(room): the stream stayed open")
        }
        #expect(recovered < .seconds(30))
        print("failover: the dead master's room took POSTs again after \(recovered)")
    }
}

/// A flag one task sets and others poll.
final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

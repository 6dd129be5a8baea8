import Foundation
import TestSupport
import Testing

/// Presence on real nodes: who is in a room across every node (`GET /rooms/{room}/presence`),
/// `event: presence` on streams that ask (`?presence=1`), coalesced; a member with several tabs
/// counted once; a dead node's members gone within the TTL; the cap.
@Suite struct PresenceTests {
    /// What a stream's presence events say, applied in order: the members, and every join seen.
    struct Seen {
        var members: Set<String> = []
        var count = 0
        var joins: [String] = []
        var leaves: [String] = []
        var events = 0
    }

    static func seen(_ client: SSEClient, room: String = "p") -> Seen {
        var seen = Seen()
        for event in client.events where event.type == "presence" {
            guard let data = try? JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: Any],
                data["room"] as? String == room
            else { continue }
            seen.events += 1
            seen.count = data["count"] as? Int ?? -1
            if let members = data["members"] as? [[String: Any]] {
                seen.members = Set(members.compactMap { $0["user"] as? String })
            }
            let joined = (data["joined"] as? [[String: Any]] ?? []).compactMap { $0["user"] as? String }
            let left = data["left"] as? [String] ?? []
            seen.joins += joined
            seen.leaves += left
            seen.members.formUnion(joined)
            seen.members.subtract(left)
        }
        return seen
    }

    static func presence(_ node: RelayProcess, room: String = "p") async throws -> [String: Any] {
        try await HTTP.get(node.baseURL + "/rooms/\(room)/presence").json
    }

    @Test func membersAcrossThreeNodesJoinOnceLeaveWithTheirLastTabAndGoWithTheirNode() async throws {
        let cluster = try await ClusterTests.Cluster.start(nodes: 3, arguments: ["--presence-ttl", "3"])
        defer { cluster.kill() }
        let watchers = try await cluster.nodes.asyncMap { try await SSEClient($0.baseURL + "/rooms/p/events?presence=1") }
        for watcher in watchers {
            #expect(await watcher.wait { Self.seen($0).events >= 1 })
            #expect(Self.seen(watcher).count == 0)
        }
        let joining = ContinuousClock.now
        let aliceFirst = try await SSEClient(cluster.nodes[0].baseURL + "/rooms/p/events?user=alice")
        let bob = try await SSEClient(cluster.nodes[1].baseURL + "/events?room=p&room=other&user=bob")
        let aliceSecond = try await SSEClient(cluster.nodes[2].baseURL + "/rooms/p/events?user=alice")
        #expect(aliceFirst.status == 200 && bob.status == 200 && aliceSecond.status == 200)
        for watcher in watchers {
            #expect(await watcher.wait(timeout: .seconds(5)) { Self.seen($0).members == ["alice", "bob"] })
            #expect(Self.seen(watcher).joins.sorted() == ["alice", "bob"], "each member joins once")
            #expect(Self.seen(watcher).count == 2)
        }
        // Seen on every node within the coalescing interval (1 s) of the last arrival, and some
        // slack for a loaded machine.
        let joinedAfter = ContinuousClock.now - joining
        print("presence: joins seen on all three nodes \(joinedAfter) after the first stream opened")
        #expect(joinedAfter < .seconds(3))
        let answer = try await Self.presence(cluster.nodes[2])
        #expect(answer["count"] as? Int == 2 && answer["truncated"] as? Bool == false)
        let members = answer["members"] as? [[String: Any]] ?? []
        #expect(members.first { $0["user"] as? String == "alice" }?["connections"] as? Int == 2)
        #expect(members.allSatisfy { $0["verified"] as? Bool == false && ($0["since"] as? String)?.hasSuffix("Z") == true })
        #expect((try await Self.presence(cluster.nodes[0], room: "other"))["count"] as? Int == 1)

        // One of alice's tabs closes: she is still here.
        aliceFirst.close()
        #expect(
            await cluster.nodes[2].wait(timeout: .seconds(5)) {
                let alice = ((try? await Self.presence(cluster.nodes[2]))?["members"] as? [[String: Any]])?.first {
                    $0["user"] as? String == "alice"
                }
                return alice?["connections"] as? Int == 1
            })
        try await Task.sleep(for: .milliseconds(1500))
        for watcher in watchers { #expect(Self.seen(watcher).leaves.isEmpty) }
        // Her last one closes: she leaves, everywhere, within the interval.
        let leaving = ContinuousClock.now
        aliceSecond.close()
        for watcher in watchers {
            #expect(await watcher.wait(timeout: .seconds(5)) { Self.seen($0).leaves == ["alice"] })
        }
        #expect(ContinuousClock.now - leaving < .seconds(3))
        // Bob's node dies: its entries outlive it in Redis, but the others see it gone within the
        // TTL (3 s) and a third more, and a flush.
        let killed = ContinuousClock.now
        cluster.nodes[1].kill()
        for watcher in [watchers[0], watchers[2]] {
            #expect(await watcher.wait(timeout: .seconds(8)) { Self.seen($0).leaves == ["alice", "bob"] })
        }
        let took = ContinuousClock.now - killed
        print("presence: a SIGKILLed node's members were seen gone after \(took) (--presence-ttl 3)")
        #expect(took < .seconds(6), "gone within the stated time: \(took)")
        #expect((try await Self.presence(cluster.nodes[0]))["count"] as? Int == 0)
        #expect((try await Self.presence(cluster.nodes[0], room: "other"))["count"] as? Int == 0)
    }

    /// Redis restarts with nothing (no persistence): the nodes store their members again and read
    /// the rooms they follow again, so presence comes back as it was and goes on.
    @Test func presenceComesBackAfterRedisRestartsEmpty() async throws {
        let cluster = try await ClusterTests.Cluster.start(nodes: 2, arguments: ["--presence-ttl", "3"])
        defer { cluster.kill() }
        let watcher = try await SSEClient(cluster.nodes[0].baseURL + "/rooms/p/events?presence=1")
        let alice = try await SSEClient(cluster.nodes[1].baseURL + "/rooms/p/events?user=alice")
        #expect(alice.status == 200)
        #expect(await watcher.wait(timeout: .seconds(5)) { Self.seen($0).members == ["alice"] })

        await cluster.redis.kill()
        try await cluster.redis.start()
        // Both nodes ready again; alice is in the room's hash again, and the watcher never lost her
        // for good.
        #expect(
            await cluster.nodes[0].wait(timeout: .seconds(15)) {
                ((try? await Self.presence(cluster.nodes[0]))?["count"] as? Int) == 1
            })
        let bob = try await SSEClient(cluster.nodes[1].baseURL + "/rooms/p/events?user=bob")
        #expect(bob.status == 200)
        #expect(await watcher.wait(timeout: .seconds(10)) { Self.seen($0).members == ["alice", "bob"] })
        alice.close()
        #expect(await watcher.wait(timeout: .seconds(5)) { Self.seen($0).members == ["bob"] })
        #expect((try await Self.presence(cluster.nodes[0]))["count"] as? Int == 1)
    }

    /// A node cut off for longer than the TTL (SIGSTOP) is taken for gone and its member leaves;
    /// when it comes back its member is back too, in the views and in the answer.
    @Test func aNodeTakenForGoneThatComesBackBringsItsMembersBack() async throws {
        let cluster = try await ClusterTests.Cluster.start(nodes: 2, arguments: ["--presence-ttl", "2"])
        defer {
            cluster.nodes[1].signal(SIGCONT)
            cluster.kill()
        }
        let watcher = try await SSEClient(cluster.nodes[0].baseURL + "/rooms/p/events?presence=1&user=ann")
        let bob = try await SSEClient(cluster.nodes[1].baseURL + "/rooms/p/events?user=bob")
        #expect(bob.status == 200)
        #expect(await watcher.wait(timeout: .seconds(5)) { Self.seen($0).members == ["ann", "bob"] })
        cluster.nodes[1].signal(SIGSTOP)
        #expect(await watcher.wait(timeout: .seconds(8)) { Self.seen($0).members == ["ann"] })
        cluster.nodes[1].signal(SIGCONT)
        #expect(await watcher.wait(timeout: .seconds(8)) { Self.seen($0).members == ["ann", "bob"] })
        #expect(
            await cluster.nodes[0].wait(timeout: .seconds(5)) {
                ((try? await Self.presence(cluster.nodes[0]))?["count"] as? Int) == 2
            })
    }

    @Test func aRoomOverTheCapGetsCountsAndTheAnswerSaysItIsTruncated() async throws {
        let node = try await RelayProcess(arguments: ["--presence-cap", "2"])
        defer { node.kill() }
        let watcher = try await SSEClient(node.baseURL + "/rooms/p/events?presence=true")
        var members: [SSEClient] = []
        for user in ["ann", "ben"] { members.append(try await SSEClient(node.baseURL + "/rooms/p/events?user=\(user)")) }
        #expect(await watcher.wait { Self.seen($0).members == ["ann", "ben"] })
        members.append(try await SSEClient(node.baseURL + "/rooms/p/events?user=cat"))
        #expect(await watcher.wait { Self.seen($0).count == 3 })
        let last = try #require(watcher.events.last { $0.type == "presence" })
        let data = try JSONSerialization.jsonObject(with: Data(last.data.utf8)) as? [String: Any]
        #expect(data?["joined"] == nil && data?["left"] == nil, "over the cap: the count alone")
        let answer = try await Self.presence(node)
        #expect(answer["count"] as? Int == 3 && answer["truncated"] as? Bool == true)
        #expect((answer["members"] as? [[String: Any]])?.map { $0["user"] as? String } == ["ann", "ben"])
        // A new stream over the cap starts with the count alone too.
        let late = try await SSEClient(node.baseURL + "/rooms/p/events?presence=1")
        #expect(await late.wait { Self.seen($0).count == 3 })
        #expect(!(late.events.first { $0.type == "presence" }?.data.contains("members") ?? true))
        // A claimed name is checked as a message's user.
        #expect(try await HTTP.get(node.baseURL + "/rooms/p/events?user=%20%20").status == 400)
    }
}

extension PresenceTests {
    /// `GET …/presence` of a room above the cap reads Redis at most once per presence interval
    /// however often it is asked, and still shows a newcomer after that interval.
    @Test func aBigRoomsPresenceIsReadOncePerIntervalHoweverOftenAskedFor() async throws {
        // One client asks 200 times at once: its request bucket is lifted, to reach the reads.
        let cluster = try await ClusterTests.Cluster.start(nodes: 1, arguments: ["--presence-cap", "2", "--request-rate-limit", "0"])
        defer { cluster.kill() }
        let node = cluster.nodes[0]
        var members: [SSEClient] = []
        for user in ["ann", "ben", "cat"] { members.append(try await SSEClient(node.baseURL + "/rooms/p/events?user=\(user)")) }
        #expect(await node.wait(timeout: .seconds(5)) { ((try? await Self.presence(node))?["count"] as? Int) == 3 })
        let roundTrips = { try await NodeAbuseTests.metric(node, "chat_relay_redis_round_trips_total") ?? 0 }
        let before = try await roundTrips()
        let counts = try await withThrowingTaskGroup(of: [Int].self) { group in
            for _ in 0..<10 {
                group.addTask { try await (0..<20).asyncMap { _ in try await Self.presence(node)["count"] as? Int ?? -1 } }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        let reads = try await roundTrips() - before
        print("200 GETs of a room above the cap: \(Int(reads)) Redis round trips")
        #expect(counts == Array(repeating: 3, count: 200))
        // Read for each, they take 40 or more; kept, one per second the run lasts (and the
        // node's own pings and presence refreshes).
        #expect(reads < 8, "\(reads) round trips for 200 GETs")
        members.append(try await SSEClient(node.baseURL + "/rooms/p/events?user=dan"))
        #expect(await node.wait(timeout: .seconds(5)) { ((try? await Self.presence(node))?["count"] as? Int) == 4 })
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}

extension RelayProcess {
    /// Polls `condition` until it holds or `timeout` passes.
    func wait(timeout: Duration, until condition: () async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return await condition()
    }
}

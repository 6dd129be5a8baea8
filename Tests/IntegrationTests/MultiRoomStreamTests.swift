import Foundation
import TestSupport
import Testing

/// One stream of several rooms (`GET /events?room=a&room=b…`) on real nodes and Redis: each
/// event says its room, the stream's id is its position in every room, and a client that resumes
/// with it on any node gets each room's gap exactly once.
@Suite struct MultiRoomStreamTests {
    static let rooms = ["ma", "mb", "mc"]
    static let query = "/events?" + rooms.map { "room=\($0)" }.joined(separator: "&")

    /// Per room, the ids of the `message` events in arrival order.
    static func idsByRoom(_ events: [SSEParser.Event]) -> [String: [String]] {
        var ids: [String: [String]] = [:]
        for event in events where event.type == "message" {
            guard let json = try? JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: Any],
                let room = json["room"] as? String, let id = json["id"] as? String
            else { continue }
            ids[room, default: []].append(id)
        }
        return ids
    }

    /// Follows a stream from `lastEventID` across the ends of a replay longer than its share
    /// (`retry: 10`, then the end): reconnects with the last id it got, as an EventSource does,
    /// until a connection stays open. Returns each connection's events and the live stream.
    static func follow(_ url: String, from lastEventID: String, limit: Int = 20) async throws -> (
        connections: [[SSEParser.Event]], live: SSEClient?
    ) {
        var position = lastEventID
        var connections: [[SSEParser.Event]] = []
        while connections.count < limit {
            let stream = try await SSEClient(url, headers: [("Last-Event-ID", position)])
            #expect(stream.status == 200)
            let ended = await stream.wait(timeout: .seconds(4)) { $0.ended }
            connections.append(stream.events)
            guard ended else { return (connections, stream) }
            #expect(stream.retry == 10, "a stream cut in its replay asks to be resumed at once")
            if let last = stream.events.last(where: { $0.type == "message" }) { position = last.lastEventID }
        }
        return (connections, nil)
    }

    @Test func everyRoomResumesExactlyOnceOnAnotherNode() async throws {
        let cluster = try await ClusterTests.Cluster.start(nodes: 2)
        defer { cluster.kill() }
        let (first, second) = (cluster.nodes[0], cluster.nodes[1])
        let publisher = Publisher()
        let stream = try await SSEClient(first.baseURL + Self.query)
        #expect(stream.status == 200)
        for index in 0..<6 {
            for room in Self.rooms { #expect(await publisher.post(cluster.nodes[index % 2].baseURL, room: room, text: "\(room) \(index)")) }
        }
        #expect(await stream.waitForMessages(18))
        let seen = stream.events.filter { $0.type == "message" }
        #expect(Self.idsByRoom(seen) == Dictionary(uniqueKeysWithValues: Self.rooms.map { ($0, publisher.ids($0)) }))
        #expect(seen.allSatisfy { $0.lastEventID.hasPrefix("~") })

        // The stream's node dies; more comes in every room through the other one.
        first.kill()
        #expect(await stream.wait { $0.ended })
        for index in 6..<10 {
            for room in Self.rooms { #expect(await publisher.post(second.baseURL, room: room, text: "\(room) \(index)")) }
        }
        let lastSeen = try #require(seen.last?.lastEventID)
        let resumed = try await SSEClient(second.baseURL + Self.query, headers: [("Last-Event-ID", lastSeen)])
        #expect(resumed.status == 200)
        #expect(await resumed.waitForMessages(12))
        for room in Self.rooms { #expect(await publisher.post(second.baseURL, room: room, text: "\(room) live")) }
        #expect(await resumed.waitForMessages(15))
        try await Task.sleep(for: .milliseconds(100))
        let got = Self.idsByRoom(resumed.events)
        for room in Self.rooms {
            #expect(got[room] == Array(publisher.ids(room).dropFirst(6)), "room \(room): the gap and what followed, once, in order")
        }
        #expect(!resumed.events.contains { $0.type == "reset" })

        // A client that had only the first 8 events resumes each room from its own place in it.
        let had = Self.idsByRoom(Array(seen[...7]))
        let fromCut = try await SSEClient(second.baseURL + Self.query, headers: [("Last-Event-ID", seen[7].lastEventID)])
        let missed = Dictionary(
            uniqueKeysWithValues: Self.rooms.map { room in (room, Array(publisher.ids(room).dropFirst(had[room]?.count ?? 0))) })
        #expect(await fromCut.waitForMessages(missed.values.reduce(0) { $0 + $1.count }))
        try await Task.sleep(for: .milliseconds(100))
        #expect(Self.idsByRoom(fromCut.events) == missed)
    }

    @Test func aRoomTrimmedPastTheClientGetsResetAloneAndOneRoomKeepsPlainIDs() async throws {
        let cluster = try await ClusterTests.Cluster.start(nodes: 2, arguments: ["--history", "5"])
        defer { cluster.kill() }
        let publisher = Publisher()
        let stream = try await SSEClient(cluster.nodes[0].baseURL + Self.query)
        for room in Self.rooms {
            for index in 0..<2 { #expect(await publisher.post(cluster.nodes[1].baseURL, room: room, text: "\(room) \(index)")) }
        }
        #expect(await stream.waitForMessages(6))
        let position = try #require(stream.events.last { $0.type == "message" }?.lastEventID)
        stream.close()
        // mb moves on far past what it keeps; ma gets one more; mc nothing.
        for index in 0..<20 { #expect(await publisher.post(cluster.nodes[0].baseURL, room: "mb", text: "mb more \(index)")) }
        #expect(await publisher.post(cluster.nodes[0].baseURL, room: "ma", text: "ma more"))

        // 7 messages a stream at --history 5: 2 a room, then what ma and mc left to mb. mb's 5
        // retained come in one opening; 6 (before Redis trims) in two.
        let (connections, live) = try await Self.follow(cluster.nodes[1].baseURL + Self.query, from: position)
        #expect(live != nil && (1...2).contains(connections.count), "\(connections.count) connections")
        let events = connections.flatMap { $0 }
        let resets = events.filter { $0.type == "reset" }
        #expect(resets.count == 1)
        let reset = try JSONSerialization.jsonObject(with: Data((resets.first?.data ?? "{}").utf8)) as? [String: Any]
        #expect(reset?["room"] as? String == "mb")
        let got = Self.idsByRoom(events)
        #expect(got["ma"] == [publisher.ids("ma").last!])
        // What the room retains (5, and a little slack: it trims in steps).
        let retained = try await HTTP.get(cluster.nodes[0].baseURL + "/rooms/mb/messages?after=0").json["messages"] as? [[String: Any]]
        let retainedIDs = (retained ?? []).compactMap { $0["id"] as? String }
        #expect(retainedIDs.count >= 5 && retainedIDs.count < 20)
        #expect(got["mb"] == retainedIDs)
        #expect(got["mc"] == nil)

        // `/events?room=x` with one room is a plain single-room stream: the messages' own ids.
        let single = try await SSEClient(cluster.nodes[0].baseURL + "/events?room=ma", headers: [("Last-Event-ID", "0")])
        #expect(await single.waitForMessages(3))
        #expect(single.events.filter { $0.type == "message" }.map(\.lastEventID) == publisher.ids("ma"))
    }

    @Test func positionsThatDoNotParseAndTooManyRoomsAreRefused() async throws {
        let node = try await RelayProcess(arguments: ["--max-stream-rooms", "3", "--rate-limit", "0"])
        defer { node.kill() }
        let publisher = Publisher()
        for room in Self.rooms { #expect(await publisher.post(node.baseURL, room: room, text: "first in \(room)")) }
        let stream = try await SSEClient(node.baseURL + Self.query, headers: [("Last-Event-ID", "0")])
        #expect(await stream.waitForMessages(3))
        let position = try #require(stream.events.last?.lastEventID)
        stream.close()

        func status(_ path: String, lastEventID: String? = nil) async throws -> (Int, String?) {
            let reply = try await HTTP.get(node.baseURL + path, headers: lastEventID.map { [("Last-Event-ID", $0)] } ?? [])
            return (reply.status, reply.status == 200 ? nil : reply.json["error"] as? String)
        }
        for garbage in ["~", "~garbage", "~" + String(repeating: "A", count: 4000), String(position.dropLast(2)), position + "x", "1-x"] {
            #expect(try await status(Self.query, lastEventID: garbage) == (400, "invalid_field"), "\(garbage.prefix(30))")
        }
        // A position of these rooms in another order, of fewer rooms, or for a single room.
        #expect(try await status("/events?room=mc&room=mb&room=ma", lastEventID: position) == (400, "invalid_field"))
        #expect(try await status("/events?room=ma&room=mb", lastEventID: position) == (400, "invalid_field"))
        #expect(try await status("/rooms/ma/events", lastEventID: position) == (400, "invalid_field"))
        #expect(try await status("/events?room=ma&room=mb&room=mc&room=md") == (400, "too_many_rooms"))
        #expect(try await status("/events?room=ma&room=no%20such") == (400, "invalid_room"))
        #expect(try await status("/events?room=ma&room=") == (400, "invalid_room"))

        // A plain message id stands for every room: each replays what came after it.
        let firstOfMb = publisher.ids("mb")[0]
        let after = try await SSEClient(node.baseURL + Self.query, headers: [("Last-Event-ID", firstOfMb)])
        #expect(await after.waitForMessages(1))
        try await Task.sleep(for: .milliseconds(100))
        #expect(Self.idsByRoom(after.events) == ["mc": publisher.ids("mc")])
        // The same room twice is the room once; and within the limit, a stream opens.
        let twice = try await SSEClient(node.baseURL + "/events?room=ma&room=ma&room=mb", headers: [("Last-Event-ID", "0")])
        #expect(await twice.waitForMessages(2))
        try await Task.sleep(for: .milliseconds(100))
        #expect(Self.idsByRoom(twice.events) == ["ma": publisher.ids("ma"), "mb": publisher.ids("mb")])
    }

    /// A stream of 100 rooms reads them all at once: its commands share a few round trips to
    /// Redis (in a row it would take one per room, or two without Last-Event-ID), and each room
    /// still replays complete and in order.
    @Test func aStreamOfAHundredRoomsOpensInAFewRoundTrips() async throws {
        let cluster = try await ClusterTests.Cluster.start(nodes: 1)
        defer { cluster.kill() }
        let node = cluster.nodes[0]
        let rooms = (0..<100).map { "many-\($0)" }
        let query = "/events?" + rooms.map { "room=\($0)" }.joined(separator: "&")
        let publisher = Publisher()
        await withTaskGroup(of: Void.self) { group in
            for room in rooms {
                group.addTask {
                    for index in 0..<2 { #expect(await publisher.post(node.baseURL, room: room, text: "\(room) \(index)")) }
                }
            }
        }
        let roundTrips = { try await NodeAbuseTests.metric(node, "chat_relay_redis_round_trips_total") ?? 0 }

        let before = try await roundTrips()
        let replayed = try await SSEClient(node.baseURL + query, headers: [("Last-Event-ID", "0")])
        #expect(replayed.status == 200)
        #expect(await replayed.waitForMessages(200))
        let opening = try await roundTrips() - before
        #expect(opening < 30, "\(opening) round trips to open a stream of 100 rooms")
        #expect(Self.idsByRoom(replayed.events) == Dictionary(uniqueKeysWithValues: rooms.map { ($0, publisher.ids($0)) }))

        // Without Last-Event-ID: each room's newest id, then its (empty) replay.
        let again = try await roundTrips()
        let fresh = try await SSEClient(node.baseURL + query)
        #expect(fresh.status == 200)
        let freshOpening = try await roundTrips() - again
        print("a stream of 100 rooms opened in \(Int(opening)) round trips with a replay of 200, \(Int(freshOpening)) at their newest")
        #expect(freshOpening < 30, "\(freshOpening) round trips to open a stream of 100 rooms at their newest")
        #expect(await publisher.post(node.baseURL, room: rooms[99], text: "live"))
        #expect(await fresh.waitForMessages(1))
        #expect(Self.idsByRoom(fresh.events) == [rooms[99]: [publisher.ids(rooms[99]).last!]])
    }

    /// A stream's opening replays at most one more than a room retains, shared between its
    /// rooms (what the quiet ones leave goes to the busy one): a longer gap ends the stream with
    /// a short `retry:`, and each reconnection with the last id goes on from there, until the
    /// rest fits and the stream goes live. Every message comes once, in order; a single-room
    /// stream's replay is never cut.
    @Test(arguments: ["embedded", "redis"])
    func aLongReplayOfSeveralRoomsComesOverSuccessiveConnections(broker: String) async throws {
        let redis = broker == "redis" ? try await RedisServer(appendOnly: false) : nil
        defer { redis?.killNow() }
        // 10 messages of history (Redis trims in steps of 1): at most 12 a stream; 4 a room of 3,
        // then ma gets the 5 that mb and mc left: 9 of its 10 (and mb's 3), then the last one.
        let node = try await RelayProcess(
            arguments: ["--history", "10", "--rate-limit", "0"] + (redis.map { ["--redis-url", $0.url] } ?? []))
        defer { node.kill() }
        let publisher = Publisher()
        for index in 0..<10 { #expect(await publisher.post(node.baseURL, room: "ma", text: "ma \(index)")) }
        for index in 0..<3 { #expect(await publisher.post(node.baseURL, room: "mb", text: "mb \(index)")) }

        let (connections, live) = try await Self.follow(node.baseURL + Self.query, from: "0")
        #expect(connections.map { Self.idsByRoom($0).mapValues(\.count) } == [["ma": 9, "mb": 3], ["ma": 1]])
        #expect(Self.idsByRoom(connections.flatMap { $0 }) == ["ma": publisher.ids("ma"), "mb": publisher.ids("mb")])
        let stream = try #require(live)
        #expect(await publisher.post(node.baseURL, room: "mc", text: "mc live"))
        #expect(await stream.wait { Self.idsByRoom($0.events)["mc"] == publisher.ids("mc") })
        let continued = try await NodeAbuseTests.metric(node, "chat_relay_replays_continued_total")
        #expect(continued == 1)

        // A single room's whole history comes in one opening, with no end.
        for index in 0..<5 { #expect(await publisher.post(node.baseURL, room: "ma", text: "ma more \(index)")) }
        let single = try await SSEClient(node.baseURL + "/rooms/ma/events", headers: [("Last-Event-ID", "0")])
        let retained = try await HTTP.get(node.baseURL + "/rooms/ma/messages?after=0").json["messages"] as? [[String: Any]]
        let retainedIDs = (retained ?? []).compactMap { $0["id"] as? String }
        #expect(retainedIDs.count >= 10)
        #expect(await single.waitForMessages(retainedIDs.count))
        #expect(!(await single.wait(timeout: .milliseconds(500)) { $0.ended }))
        #expect(single.events.filter { $0.type == "message" }.map(\.lastEventID) == retainedIDs)
    }
}

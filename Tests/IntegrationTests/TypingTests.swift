import Foundation
import TestSupport
import Testing

/// `POST /rooms/{room}/typing` on real nodes: relayed live as `event: typing` to the room's
/// streams on every node, never stored or replayed, rate-limited like POSTs.
@Suite struct TypingTests {
    static func typing(_ baseURL: String, room: String, user: String, headers: [(String, String)] = []) async throws -> HTTP.Reply {
        let body = try JSONSerialization.data(withJSONObject: ["user": user])
        return try await HTTP.request(
            "POST", "\(baseURL)/rooms/\(room)/typing", headers: [("Content-Type", "application/json")] + headers, body: Array(body))
    }

    static func data(_ event: SSEParser.Event) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(event.data.utf8))) as? [String: Any] ?? [:]
    }

    @Test func typingReachesTheRoomsStreamsOnEveryNodeAndIsNeverStored() async throws {
        let cluster = try await ClusterTests.Cluster.start(nodes: 2)
        defer { cluster.kill() }
        let publisher = Publisher()
        #expect(await publisher.post(cluster.nodes[0].baseURL, room: "ta", text: "before"))
        let single = try await SSEClient(cluster.nodes[0].baseURL + "/rooms/ta/events", headers: [("Last-Event-ID", "0")])
        let several = try await SSEClient(cluster.nodes[1].baseURL + "/events?room=tb&room=ta", headers: [("Last-Event-ID", "0")])
        let elsewhere = try await SSEClient(cluster.nodes[1].baseURL + "/rooms/tc/events")
        #expect(await single.waitForMessages(1))
        #expect(await several.waitForMessages(1))

        let reply = try await Self.typing(cluster.nodes[1].baseURL, room: "ta", user: " alice ")
        #expect(reply.status == 204, "\(reply.body)")
        for stream in [single, several] {
            #expect(await stream.wait { $0.events.contains { $0.type == "typing" } })
            let event = try #require(stream.events.first { $0.type == "typing" })
            #expect(Self.data(event)["room"] as? String == "ta")
            #expect(Self.data(event)["user"] as? String == "alice")
            #expect(Self.data(event)["verified"] as? Bool == false)
            // No id: the client's position stays that of its last message.
            #expect(event.lastEventID == stream.events.last { $0.type == "message" }?.lastEventID)
        }
        // Only the room's streams; and after it, messages go on in order.
        #expect(await publisher.post(cluster.nodes[1].baseURL, room: "ta", text: "after"))
        #expect(await single.waitForMessages(2))
        #expect(single.messageIDs == publisher.ids("ta"))
        try await Task.sleep(for: .milliseconds(100))
        #expect(!elsewhere.events.contains { $0.type == "typing" })

        // Never stored: not in history, not in a replay.
        let history = try await HTTP.get(cluster.nodes[0].baseURL + "/rooms/ta/messages?after=0").json["messages"] as? [[String: Any]]
        #expect(history?.count == 2)
        let replayed = try await SSEClient(cluster.nodes[0].baseURL + "/rooms/ta/events", headers: [("Last-Event-ID", "0")])
        #expect(await replayed.waitForMessages(2))
        try await Task.sleep(for: .milliseconds(100))
        #expect(!replayed.events.contains { $0.type == "typing" })

        // Who is typing must be someone.
        let nobody = try await Self.typing(cluster.nodes[0].baseURL, room: "ta", user: "  ")
        #expect(nobody.status == 400 && nobody.json["error"] as? String == "invalid_field")
        let get = try await HTTP.get(cluster.nodes[0].baseURL + "/rooms/ta/typing")
        #expect(get.status == 405 && get.header("Allow") == "POST")
    }

    @Test func typingIsRateLimitedInABucketOfItsOwn() async throws {
        let node = try await RelayProcess(arguments: ["--rate-limit", "0.1", "--rate-burst", "2"])
        defer { node.kill() }
        var statuses: [Int] = []
        for _ in 0..<3 { statuses.append(try await Self.typing(node.baseURL, room: "r", user: "bob").status) }
        #expect(statuses == [204, 204, 429])
        // Typing did not use up what the client may post, nor the other way round.
        for _ in 0..<2 { #expect(try await HTTP.postMessage(node.baseURL + "/rooms/r/messages", user: "bob", text: "hi").status == 201) }
        #expect(try await HTTP.postMessage(node.baseURL + "/rooms/r/messages", user: "bob", text: "hi").status == 429)
        #expect(try await Self.typing(node.baseURL, room: "r", user: "bob").status == 429)
    }
}

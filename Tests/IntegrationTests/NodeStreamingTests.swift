import Foundation
import TestSupport
import Testing

/// A real relay node on a free port, real HTTP clients: fan-out, replay, reset, heartbeats.
@Suite struct NodeStreamingTests {
    @Test func twoSubscribersGetEveryMessageInOrderAndOtherRoomsGetNone() async throws {
        let node = try await RelayProcess(arguments: ["--rate-limit", "0"])
        defer { node.kill() }
        let a = try await SSEClient("\(node.baseURL)/rooms/blue/events")
        let b = try await SSEClient("\(node.baseURL)/rooms/blue/events")
        let other = try await SSEClient("\(node.baseURL)/rooms/green/events")
        #expect(a.status == 200)
        #expect(a.headers.first(name: "Content-Type") == "text/event-stream")
        #expect(a.headers.first(name: "Cache-Control") == "no-cache")
        #expect(a.headers.first(name: "X-Accel-Buffering") == "no")
        #expect(a.headers.first(name: "X-Relay-Node") == node.nodeID)

        var posted: [String] = []
        for index in 0..<50 {
            let reply = try await HTTP.postMessage("\(node.baseURL)/rooms/blue/messages", user: "alice", text: "message \(index)")
            try #require(reply.status == 201, "POST answered \(reply.status): \(reply.body)")
            posted.append(try #require(reply.json["id"] as? String))
        }
        #expect(await a.waitForMessages(50))
        #expect(await b.waitForMessages(50))
        #expect(a.messageIDs == posted)
        #expect(b.messageIDs == posted)
        #expect(a.messages.map { $0["text"] as? String } == (0..<50).map { "message \($0)" })
        #expect(a.retry != nil, "the stream opens with retry:")
        try await Task.sleep(for: .milliseconds(200))
        #expect(other.messages.isEmpty)
    }

    @Test func seedPathsAreTheLobby() async throws {
        let node = try await RelayProcess()
        defer { node.kill() }
        let stream = try await SSEClient("\(node.baseURL)/events")
        let roomStream = try await SSEClient("\(node.baseURL)/rooms/lobby/events")
        let form = try await HTTP.request(
            "POST", "\(node.baseURL)/messages",
            headers: [("Content-Type", "application/x-www-form-urlencoded")], body: Array("user=bob&text=hello+there".utf8))
        #expect(form.status == 201)
        #expect(form.json["room"] as? String == "lobby")
        #expect(await stream.waitForMessages(1))
        #expect(await roomStream.waitForMessages(1))
        #expect(stream.messages.first?["text"] as? String == "hello there")
    }

    @Test func replayByHeaderAndByQueryThenLiveWithoutGapOrDuplicate() async throws {
        let node = try await RelayProcess(arguments: ["--rate-limit", "0"])
        defer { node.kill() }
        var ids: [String] = []
        for index in 0..<10 {
            let reply = try await HTTP.postMessage("\(node.baseURL)/rooms/r/messages", user: "u", text: "m\(index)")
            ids.append(try #require(reply.json["id"] as? String))
        }
        let byHeader = try await SSEClient("\(node.baseURL)/rooms/r/events", headers: [("Last-Event-ID", ids[3])])
        let byQuery = try await SSEClient("\(node.baseURL)/rooms/r/events?lastEventId=\(ids[6])")
        // The header wins over the query.
        let both = try await SSEClient("\(node.baseURL)/rooms/r/events?lastEventId=\(ids[8])", headers: [("Last-Event-ID", ids[1])])
        #expect(await byHeader.waitForMessages(6))
        #expect(await byQuery.waitForMessages(3))
        #expect(await both.waitForMessages(8))
        #expect(byHeader.messageIDs == Array(ids[4...]))
        #expect(byQuery.messageIDs == Array(ids[7...]))
        #expect(both.messageIDs == Array(ids[2...]))

        // Live messages continue right after the replay.
        for index in 10..<15 {
            let reply = try await HTTP.postMessage("\(node.baseURL)/rooms/r/messages", user: "u", text: "m\(index)")
            ids.append(try #require(reply.json["id"] as? String))
        }
        #expect(await byHeader.waitForMessages(11))
        #expect(byHeader.messageIDs == Array(ids[4...]))
        #expect(await byQuery.waitForMessages(8))
        #expect(byQuery.messageIDs == Array(ids[7...]))
    }

    @Test func replayRacesLivePublishingWithoutGapOrDuplicate() async throws {
        let node = try await RelayProcess(arguments: ["--rate-limit", "0"])
        defer { node.kill() }
        let first = try await HTTP.postMessage("\(node.baseURL)/rooms/race/messages", user: "u", text: "start")
        let startID = try #require(first.json["id"] as? String)
        // Publish continuously while subscribers join with the first id.
        let publisher = Task {
            var ids: [String] = []
            for index in 0..<200 {
                let reply = try await HTTP.postMessage("\(node.baseURL)/rooms/race/messages", user: "u", text: "n\(index)")
                ids.append(reply.json["id"] as? String ?? "?")
            }
            return ids
        }
        var subscribers: [SSEClient] = []
        for _ in 0..<10 {
            subscribers.append(try await SSEClient("\(node.baseURL)/rooms/race/events", headers: [("Last-Event-ID", startID)]))
            try await Task.sleep(for: .milliseconds(5))
        }
        let published = try await publisher.value
        for subscriber in subscribers {
            #expect(await subscriber.waitForMessages(200))
            #expect(subscriber.messageIDs == published, "every message after the start id exactly once, in order")
        }
    }

    @Test func resetWhenTheGapCannotBeFilled() async throws {
        let node = try await RelayProcess(arguments: ["--history", "5", "--rate-limit", "0"])
        defer { node.kill() }
        var ids: [String] = []
        for index in 0..<10 {
            let reply = try await HTTP.postMessage("\(node.baseURL)/rooms/r/messages", user: "u", text: "m\(index)")
            ids.append(try #require(reply.json["id"] as? String))
        }
        let stream = try await SSEClient("\(node.baseURL)/rooms/r/events", headers: [("Last-Event-ID", ids[1])])
        #expect(await stream.waitForMessages(5))
        let events = stream.events
        #expect(events.first?.type == "reset")
        #expect(events.first?.data == "{\"oldest\":\"\(ids[5])\"}")
        #expect(stream.messageIDs == Array(ids[5...]))
        // The newest evicted id is no gap: no reset.
        let noGap = try await SSEClient("\(node.baseURL)/rooms/r/events", headers: [("Last-Event-ID", ids[4])])
        #expect(await noGap.waitForMessages(5))
        #expect(noGap.events.allSatisfy { $0.type == "message" })
        // 0 (and 0-0) ask for everything retained: a client that had nothing missed nothing.
        for zero in ["0", "0-0"] {
            let everything = try await SSEClient("\(node.baseURL)/rooms/r/events", headers: [("Last-Event-ID", zero)])
            #expect(everything.status == 200)
            #expect(await everything.waitForMessages(5))
            #expect(everything.messageIDs == Array(ids[5...]))
            #expect(everything.events.allSatisfy { $0.type == "message" }, "Last-Event-ID: \(zero)")
        }
        let byQuery = try await SSEClient("\(node.baseURL)/rooms/r/events?lastEventId=0")
        #expect(await byQuery.waitForMessages(5))
        #expect(byQuery.events.allSatisfy { $0.type == "message" })
        let history = try await HTTP.get("\(node.baseURL)/rooms/r/messages?after=0").json["messages"] as? [[String: Any]]
        #expect(history?.compactMap { $0["id"] as? String } == Array(ids[5...]))
    }

    @Test func heartbeatsArriveWhileIdle() async throws {
        let node = try await RelayProcess(arguments: ["--heartbeat", "0.3"])
        defer { node.kill() }
        let stream = try await SSEClient("\(node.baseURL)/rooms/quiet/events")
        #expect(await stream.wait(timeout: .seconds(5)) { $0.comments.filter { $0 == " heartbeat" }.count >= 3 })
        #expect(stream.events.isEmpty)
        #expect(!stream.ended)
    }

    @Test func historyEndpointPagesOldestFirst() async throws {
        let node = try await RelayProcess(arguments: ["--rate-limit", "0"])
        defer { node.kill() }
        var ids: [String] = []
        for index in 0..<60 {
            let reply = try await HTTP.postMessage("\(node.baseURL)/rooms/h/messages", user: "u", text: "m\(index)")
            ids.append(try #require(reply.json["id"] as? String))
        }
        func history(_ query: String) async throws -> [String] {
            let reply = try await HTTP.get("\(node.baseURL)/rooms/h/messages\(query)")
            #expect(reply.status == 200)
            let messages = reply.json["messages"] as? [[String: Any]] ?? []
            return messages.compactMap { $0["id"] as? String }
        }
        #expect(try await history("") == Array(ids.suffix(50)))
        #expect(try await history("?limit=3") == Array(ids.suffix(3)))
        #expect(try await history("?after=\(ids[10])&limit=4") == Array(ids[11...14]))
        #expect(try await history("?after=\(ids[58])") == [ids[59]])
        #expect(try await history("?limit=100000").count == 60)
        #expect(try await HTTP.get("\(node.baseURL)/rooms/empty/messages").body == "{\"messages\":[]}")
    }

    @Test func idempotencyKeyStoresOnce() async throws {
        let node = try await RelayProcess()
        defer { node.kill() }
        let stream = try await SSEClient("\(node.baseURL)/rooms/i/events")
        let first = try await HTTP.postMessage(
            "\(node.baseURL)/rooms/i/messages", user: "u", text: "once", headers: [("Idempotency-Key", "abc-123")])
        let retry = try await HTTP.postMessage(
            "\(node.baseURL)/rooms/i/messages", user: "u", text: "once", headers: [("Idempotency-Key", "abc-123")])
        #expect(first.status == 201)
        #expect(retry.status == 200)
        #expect(retry.json["id"] as? String == first.json["id"] as? String)
        let history = try await HTTP.get("\(node.baseURL)/rooms/i/messages")
        #expect((history.json["messages"] as? [Any])?.count == 1)
        #expect(await stream.waitForMessages(1))
        try await Task.sleep(for: .milliseconds(200))
        #expect(stream.messages.count == 1)
    }
}

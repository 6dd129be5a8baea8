import Foundation
import TestSupport
import Testing

/// Every error row of the spec, against a real node: status, JSON code, headers.
@Suite struct NodeErrorTests {
    func expectError(
        _ reply: HTTP.Reply, _ status: Int, _ code: String, node: RelayProcess, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(reply.status == status, "body: \(reply.body)", sourceLocation: sourceLocation)
        #expect(reply.json["error"] as? String == code, "body: \(reply.body)", sourceLocation: sourceLocation)
        #expect((reply.json["message"] as? String)?.isEmpty == false, sourceLocation: sourceLocation)
        #expect(reply.header("Content-Type")?.hasPrefix("application/json") == true, sourceLocation: sourceLocation)
        #expect(reply.header("X-Relay-Node") == node.nodeID, sourceLocation: sourceLocation)
    }

    func post(
        _ node: RelayProcess, _ path: String = "/rooms/r/messages", contentType: String = "application/json", body: String,
        headers: [(String, String)] = []
    ) async throws -> HTTP.Reply {
        try await HTTP.request("POST", node.baseURL + path, headers: [("Content-Type", contentType)] + headers, body: Array(body.utf8))
    }

    @Test func invalidBody() async throws {
        let node = try await RelayProcess(arguments: ["--rate-limit", "0"])
        defer { node.kill() }
        expectError(try await post(node, body: "{not json"), 400, "invalid_body", node: node)
        expectError(try await post(node, body: "[\"user\",\"text\"]"), 400, "invalid_body", node: node)
        let notUTF8 = try await HTTP.request(
            "POST", node.baseURL + "/rooms/r/messages", headers: [("Content-Type", "application/json")],
            body: Array("{\"user\":\"a\",\"text\":\"".utf8) + [0xC3, 0x28] + Array("\"}".utf8))
        expectError(notUTF8, 400, "invalid_body", node: node)
        expectError(
            try await post(node, contentType: "application/x-www-form-urlencoded", body: "user=a&text=%FF"), 400, "invalid_body", node: node
        )
    }

    @Test func invalidField() async throws {
        let node = try await RelayProcess(arguments: ["--rate-limit", "0", "--max-message-bytes", "100"])
        defer { node.kill() }
        for body in [
            #"{"text":"no user"}"#,
            #"{"user":"","text":"empty user"}"#,
            #"{"user":"   ","text":"blank user"}"#,
            "{\"user\":\"\(String(repeating: "u", count: 33))\",\"text\":\"long user\"}",
            #"{"user":"a\u0007b","text":"bell in user"}"#,
            #"{"user":"alice"}"#,
            #"{"user":"alice","text":"   "}"#,
            "{\"user\":\"alice\",\"text\":\"\(String(repeating: "x", count: 101))\"}",
            #"{"user":"alice","text":"nul \u0000 here"}"#,
            #"{"user":"alice","text":"escape \u001b[31m"}"#,
            #"{"user":5,"text":"number user"}"#,
        ] {
            expectError(try await post(node, body: body), 400, "invalid_field", node: node)
        }
        let badKey = try await post(
            node, body: #"{"user":"a","text":"t"}"#, headers: [("Idempotency-Key", String(repeating: "k", count: 65))])
        expectError(badKey, 400, "invalid_field", node: node)
        expectError(
            try await HTTP.get(node.baseURL + "/rooms/r/events", headers: [("Last-Event-ID", "yesterday")]), 400, "invalid_field",
            node: node)
        expectError(try await HTTP.get(node.baseURL + "/rooms/r/events?lastEventId=1-2-3"), 400, "invalid_field", node: node)
        expectError(try await HTTP.get(node.baseURL + "/rooms/r/messages?after=x"), 400, "invalid_field", node: node)
        expectError(try await HTTP.get(node.baseURL + "/rooms/r/messages?limit=0"), 400, "invalid_field", node: node)
        // At the limit exactly, the text is accepted.
        let atLimit = try await post(node, body: "{\"user\":\"alice\",\"text\":\"\(String(repeating: "x", count: 100))\"}")
        #expect(atLimit.status == 201)
    }

    @Test func invalidRoom() async throws {
        let node = try await RelayProcess()
        defer { node.kill() }
        let long = String(repeating: "r", count: 65)
        for room in [long, "bad.room", "caf%C3%A9", "a%20b"] {
            expectError(try await post(node, "/rooms/\(room)/messages", body: #"{"user":"a","text":"t"}"#), 400, "invalid_room", node: node)
            expectError(try await HTTP.get(node.baseURL + "/rooms/\(room)/events"), 400, "invalid_room", node: node)
            expectError(try await HTTP.get(node.baseURL + "/rooms/\(room)/messages"), 400, "invalid_room", node: node)
        }
    }

    @Test func tooLargeAndUnsupportedMediaType() async throws {
        let node = try await RelayProcess(arguments: ["--max-body-bytes", "1024"])
        defer { node.kill() }
        let big = "{\"user\":\"a\",\"text\":\"\(String(repeating: "x", count: 2000))\"}"
        expectError(try await post(node, body: big), 413, "too_large", node: node)
        expectError(try await post(node, contentType: "text/plain", body: "hello"), 415, "unsupported_media_type", node: node)
        let noType = try await HTTP.request("POST", node.baseURL + "/rooms/r/messages", body: Array("user=a&text=b".utf8))
        expectError(noType, 415, "unsupported_media_type", node: node)
    }

    @Test func aMebibyteBodyGets413AndTheNodeStaysHealthy() async throws {
        let node = try await RelayProcess()
        defer { node.kill() }
        let mebibyte = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
        for _ in 0..<3 {
            let reply = try await HTTP.request(
                "POST", node.baseURL + "/rooms/r/messages", headers: [("Content-Type", "application/json")], body: mebibyte)
            expectError(reply, 413, "too_large", node: node)
        }
        #expect(try await HTTP.get(node.baseURL + "/health/ready").status == 200)
        let ok = try await HTTP.postMessage(node.baseURL + "/rooms/r/messages", user: "a", text: "still here")
        #expect(ok.status == 201)
        #expect(node.isRunning)
    }

    @Test func rateLimited() async throws {
        // A burst of 3, then one POST per 10 s: no refill can come between the test's POSTs,
        // however slowly a loaded machine sends them.
        let node = try await RelayProcess(arguments: ["--rate-limit", "0.1", "--rate-burst", "3"])
        defer { node.kill() }
        var statuses: [Int] = []
        var limited: HTTP.Reply?
        for index in 0..<5 {
            let reply = try await HTTP.postMessage(node.baseURL + "/rooms/r/messages", user: "a", text: "m\(index)")
            statuses.append(reply.status)
            if reply.status == 429 { limited = reply }
        }
        #expect(statuses.prefix(3) == [201, 201, 201])
        #expect(statuses.contains(429))
        let reply = try #require(limited)
        expectError(reply, 429, "rate_limited", node: node)
        #expect(Int(reply.header("Retry-After") ?? "") ?? 0 >= 1)
        // Streams are not rate limited.
        #expect(try await SSEClient(node.baseURL + "/rooms/r/events").status == 200)
    }

    @Test func connectionsBeyondTheLimitGet503() async throws {
        // One client plays every stream: its own bound is lifted, to reach the node's.
        let node = try await RelayProcess(arguments: ["--max-connections", "3", "--max-streams-per-client", "0"])
        defer { node.kill() }
        // Raw connections, so closing one is a plain FIN the test controls.
        var open: [RawSocket] = []
        for _ in 0..<3 { open.append(try RawSocket(port: node.port, get: "/rooms/r/events")) }
        func connections() async throws -> Int? {
            try await HTTP.get(node.baseURL + "/health/ready").json["connections"] as? Int
        }
        var registered = false
        for _ in 0..<100 where !registered {
            registered = try await connections() == 3
            if !registered { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(registered)
        let refused = try await HTTP.get(node.baseURL + "/rooms/r/events")
        expectError(refused, 503, "unavailable", node: node)
        #expect(Int(refused.header("Retry-After") ?? "") ?? 0 >= 1)
        // POSTs and health still work at the stream limit.
        #expect(try await HTTP.postMessage(node.baseURL + "/rooms/r/messages", user: "a", text: "t").status == 201)
        // A closed stream frees its place at once (no need to wait for a heartbeat to fail).
        open.removeFirst().close()
        var freed = false
        for _ in 0..<100 where !freed {
            freed = try await connections() == 2
            if !freed { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(freed)
        let reopened = try await SSEClient(node.baseURL + "/rooms/r/events")
        #expect(reopened.status == 200)
    }

    @Test func unknownPathsAreJSONToo() async throws {
        let node = try await RelayProcess()
        defer { node.kill() }
        expectError(try await HTTP.get(node.baseURL + "/nope"), 404, "not_found", node: node)
    }
}

import Foundation
import TestSupport
import Testing

/// What all rooms' history may hold: on the embedded broker `--history-memory`, past which the
/// least recently used rooms are forgotten (a client resuming there gets `reset`); on Redis, its
/// `maxmemory` with `noeviction`, past which a POST gets a clear `503` and nothing is stored.
@Suite struct StoreMemoryTests {
    static let text = String(repeating: "m", count: 4000)

    @Test func theEmbeddedHistoryStaysWithinItsBudget() async throws {
        let node = try await RelayProcess(arguments: ["--rate-limit", "0", "--history-memory", "1MiB"])
        defer { node.kill() }
        var first: String?
        for index in 0..<600 {
            let reply = try await HTTP.postMessage("\(node.baseURL)/rooms/r-\(index)/messages", user: "u", text: Self.text)
            try #require(reply.status == 201, "\(reply.body)")
            if index == 0 { first = reply.json["id"] as? String }
        }
        let evicted = try await NodeAbuseTests.metric(node, "chat_relay_rooms_evicted_total") ?? 0
        // 600 messages of 4 KB do not fit 1 MiB: most rooms were forgotten.
        #expect(evicted >= 300, "\(evicted) rooms forgotten")
        #expect(try await HTTP.get("\(node.baseURL)/rooms/r-0/messages").body == "{\"messages\":[]}")
        #expect((try await HTTP.get("\(node.baseURL)/rooms/r-599/messages").json["messages"] as? [Any])?.count == 1)
        // A client that was in the first room is told it missed something.
        let resumed = try await SSEClient("\(node.baseURL)/rooms/r-0/events", headers: [("Last-Event-ID", try #require(first))])
        #expect(await resumed.wait { $0.events.first?.type == "reset" })
    }

    @Test func aFullRedisRefusesClearlyAndTheNodeStaysReady() async throws {
        let redis = try await RedisServer(appendOnly: false, arguments: ["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"])
        defer { redis.killNow() }
        let node = try await RelayProcess(arguments: ["--rate-limit", "0", "--redis-url", redis.url])
        defer { node.kill() }
        var refusal: HTTP.Reply?
        var stored = 0
        for index in 0..<5000 where refusal == nil {
            let reply = try await HTTP.postMessage("\(node.baseURL)/rooms/r-\(index % 50)/messages", user: "u", text: Self.text)
            if reply.status == 201 { stored += 1 } else { refusal = reply }
        }
        let full = try #require(refusal, "Redis never filled (\(stored) stored)")
        #expect(full.status == 503)
        #expect(full.json["error"] as? String == "unavailable")
        #expect((full.json["message"] as? String)?.contains("store is full") == true, "\(full.body)")
        #expect(full.header("Retry-After") == "10")
        #expect(try await HTTP.get("\(node.baseURL)/health/ready").status == 200, "reads still work")
        #expect((try await HTTP.get("\(node.baseURL)/rooms/r-0/messages").json["messages"] as? [Any])?.isEmpty == false)
        let metrics = try await HTTP.get("\(node.baseURL)/metrics").body
        #expect(metrics.contains("chat_relay_publish_failures_total{reason=\"full\"} "), "counted")
    }
}

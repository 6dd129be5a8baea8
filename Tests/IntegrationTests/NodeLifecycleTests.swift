import Foundation
import TestSupport
import Testing

/// Slow subscribers, draining, health, metrics and CORS on a real node.
@Suite struct NodeLifecycleTests {
    /// A client that stops reading in a quiet room, with more sent than its connection holds (a
    /// 6 MB replay: the kernel takes up to 4 MB into the socket's buffer, the node holds the rest), is closed as slow after a few heartbeats that find its connection still
    /// full, not held with what it was sent for as long as it stays connected.
    @Test func aStreamWhoseClientStopsReadingInAQuietRoomIsClosedAfterAFewHeartbeats() async throws {
        let node = try await RelayProcess(arguments: ["--rate-limit", "0", "--heartbeat", "1", "--history", "1500"])
        defer { node.kill() }
        let text = String(repeating: "z", count: 4000)
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    for index in stride(from: worker, to: 1500, by: 4) {
                        _ = try? await HTTP.postMessage(node.baseURL + "/rooms/quiet/messages", user: "p", text: "\(index) \(text)")
                    }
                }
            }
        }
        let opened = ContinuousClock.now
        let stalled = try RawSocket(port: node.port, get: "/rooms/quiet/events?lastEventId=0", receiveBuffer: 2048)
        defer { stalled.close() }
        let slow = "chat_relay_subscribers_dropped_total{reason=\"slow\"}"
        try await Task.sleep(for: .milliseconds(1500))
        #expect(try await NodeAbuseTests.metric(node, "chat_relay_open_streams") == 1, "open until the limit")
        var dropped = false
        while !dropped, ContinuousClock.now - opened < .seconds(30) {
            dropped = try await NodeAbuseTests.metric(node, slow) == 1
            if !dropped { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(dropped, "closed as slow")
        print("a stalled stream was closed \(ContinuousClock.now - opened) after it opened (--heartbeat 1)")
        #expect(try await NodeAbuseTests.metric(node, "chat_relay_open_streams") == 0)
    }

    @Test func aSubscriberThatNeverReadsIsDisconnectedAndMemoryStaysBounded() async throws {
        let node = try await RelayProcess(arguments: ["--rate-limit", "0", "--subscriber-buffer", "64"])
        defer { node.kill() }
        let reader = try await SSEClient(node.baseURL + "/rooms/flood/events")
        let stalled = try RawSocket(port: node.port, get: "/rooms/flood/events", receiveBuffer: 2048)
        try await Task.sleep(for: .milliseconds(200))
        let before = try #require(node.residentBytes())

        let text = String(repeating: "y", count: 4000)
        let count = 1500  // about 6 MB of events: far beyond the socket buffers and the 64-event queue
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    for index in stride(from: worker, to: count, by: 4) {
                        _ = try? await HTTP.postMessage(node.baseURL + "/rooms/flood/messages", user: "p", text: "\(index) \(text)")
                    }
                }
            }
        }
        #expect(await reader.waitForMessages(count, timeout: .seconds(30)), "the reading subscriber keeps receiving")
        let metrics = try await HTTP.get(node.baseURL + "/metrics").body
        #expect(metrics.contains("chat_relay_subscribers_dropped_total{reason=\"slow\"} 1"), "\(metrics)")
        var closed = false
        for _ in 0..<100 where !closed {
            closed = stalled.peerClosed()
            if !closed { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(closed, "the node closed the stalled connection")
        let after = try #require(node.residentBytes())
        #expect(after - before < 48 << 20, "resident memory grew by \((after - before) >> 20) MiB")
        #expect(try await HTTP.get(node.baseURL + "/health/ready").json["connections"] as? Int == 1)
    }

    @Test func sigtermDrainsStreamsAndExitsZero() async throws {
        // The streams end spread over 5 s (half the drain timeout): the requests below, made
        // while the node drains, have that long even on a loaded machine.
        let node = try await RelayProcess(arguments: ["--drain-timeout", "10", "--retry-ms", "1000"])
        defer { node.kill() }
        var streams: [SSEClient] = []
        for _ in 0..<6 { streams.append(try await SSEClient(node.baseURL + "/rooms/d/events")) }
        #expect(try await HTTP.get(node.baseURL + "/health/ready").status == 200)

        let signalled = ContinuousClock.now
        node.signal(SIGTERM)
        // Readiness turns 503 at once, new streams are refused, POSTs still work while draining.
        // Asked at once, so all four are answered well within the drain even on a busy machine.
        try await Task.sleep(for: .milliseconds(100))
        async let readyAnswer = HTTP.get(node.baseURL + "/health/ready")
        async let live = HTTP.get(node.baseURL + "/health/live")
        async let stream = HTTP.get(node.baseURL + "/rooms/d/events")
        async let post = HTTP.postMessage(node.baseURL + "/rooms/d/messages", user: "a", text: "during drain")
        do {
            let ready = try await readyAnswer
            #expect(ready.status == 503)
            #expect(ready.json["status"] as? String == "unavailable")
            #expect(ready.json["draining"] as? Bool == true)
            #expect(try await live.status == 200)
            #expect(try await stream.status == 503)
            #expect(try await post.status == 201)
        } catch {
            Issue.record("\(error), \(ContinuousClock.now - signalled) after SIGTERM; the node's log:\n\(node.log())")
        }

        let status = await node.waitForExit(timeout: .seconds(12))
        let took = ContinuousClock.now - signalled
        #expect(status == 0, "exit status; log:\n\(node.log())")
        #expect(took < .seconds(10.5), "exited after \(took)")
        for stream in streams {
            #expect(await stream.wait(timeout: .seconds(2)) { $0.ended })
            // Each stream got the message sent while draining or ended first; each ended with its own retry delay.
            #expect((500...2000).contains(stream.retry ?? -1), "retry \(String(describing: stream.retry))")
        }
        let retries = Set(streams.compactMap(\.retry))
        #expect(retries.count > 1, "reconnect delays are spread out")
    }

    @Test func healthAndMetrics() async throws {
        let node = try await RelayProcess(arguments: ["--rate-limit", "0"])
        defer { node.kill() }
        let live = try await HTTP.get(node.baseURL + "/health/live")
        #expect(live.status == 200)
        #expect(live.body == "{\"status\":\"ok\"}")
        for path in ["/health/ready", "/health"] {
            let ready = try await HTTP.get(node.baseURL + path)
            #expect(ready.status == 200)
            #expect(ready.json["status"] as? String == "ready")
            #expect(ready.json["node"] as? String == node.nodeID)
            #expect(ready.json["broker"] as? String == "embedded")
            #expect(ready.json["connections"] as? Int == 0)
        }
        let stream = try await SSEClient(node.baseURL + "/rooms/m/events")
        for _ in 0..<3 { _ = try await HTTP.postMessage(node.baseURL + "/rooms/m/messages", user: "a", text: "t") }
        #expect(await stream.waitForMessages(3))
        let metrics = try await HTTP.get(node.baseURL + "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.header("Content-Type")?.hasPrefix("text/plain") == true)
        for line in [
            "chat_relay_open_streams 1", "chat_relay_messages_published_total 3", "chat_relay_events_delivered_total 3",
            "chat_relay_subscribers_dropped_total{reason=\"slow\"} 0", "chat_relay_broker_up 1",
            "chat_relay_broker_reconnects_total 0", "chat_relay_publish_duration_seconds_count 3",
        ] {
            #expect(metrics.body.contains(line), "missing \(line) in\n\(metrics.body)")
        }
    }

    @Test func corsOnlyForAllowedOrigins() async throws {
        let open = try await RelayProcess(arguments: ["--allow-origin", "http://chat.example.test"])
        defer { open.kill() }
        let preflight = try await HTTP.request(
            "OPTIONS", open.baseURL + "/rooms/r/messages",
            headers: [
                ("Origin", "http://chat.example.test"), ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type, idempotency-key"),
            ])
        #expect(preflight.status == 204)
        #expect(preflight.header("Access-Control-Allow-Origin") == "http://chat.example.test")
        #expect(preflight.header("Access-Control-Allow-Methods")?.contains("POST") == true)
        #expect(preflight.header("Access-Control-Allow-Headers")?.contains("Idempotency-Key") == true)
        #expect(preflight.header("X-Relay-Node") == open.nodeID)
        let allowed = try await HTTP.get(open.baseURL + "/rooms/r/messages", headers: [("Origin", "http://chat.example.test")])
        #expect(allowed.header("Access-Control-Allow-Origin") == "http://chat.example.test")
        let other = try await HTTP.get(open.baseURL + "/rooms/r/messages", headers: [("Origin", "http://evil.example.test")])
        #expect(other.header("Access-Control-Allow-Origin") == nil)
        // The answer differs by Origin whatever the origin, or none: a cache must know.
        let plain = try await HTTP.get(open.baseURL + "/rooms/r/messages")
        for reply in [preflight, allowed, other, plain] {
            #expect(reply.headers[canonicalForm: "vary"].contains("Origin"), "\(reply.headers)")
        }

        let closed = try await RelayProcess()
        defer { closed.kill() }
        let none = try await HTTP.get(closed.baseURL + "/rooms/r/messages", headers: [("Origin", "http://chat.example.test")])
        #expect(none.header("Access-Control-Allow-Origin") == nil)
    }

    @Test func thePageIsServed() async throws {
        let node = try await RelayProcess()
        defer { node.kill() }
        let page = try await HTTP.get(node.baseURL + "/")
        #expect(page.status == 200)
        #expect(page.header("Content-Type")?.hasPrefix("text/html") == true)
        // Nothing inline: the policy runs the node's own script and style only, and no other site
        // may frame the page.
        #expect(!page.body.contains("<script>") && !page.body.contains("<style>") && page.body.contains("<script src=\"app.js\">"))
        let policy = try #require(page.header("Content-Security-Policy"))
        for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
            #expect(policy.contains(directive), "\(policy)")
        }
        #expect(!policy.contains("unsafe-inline"))
        #expect(page.header("Referrer-Policy") == "no-referrer")
        #expect(page.header("X-Content-Type-Options") == "nosniff")
        let script = try await HTTP.get(node.baseURL + "/app.js")
        #expect(script.status == 200 && script.header("Content-Type") == "text/javascript; charset=utf-8")
        #expect(script.body.contains("EventSource"))
        #expect(!script.body.contains("innerHTML"), "user text is never parsed as HTML")
        let style = try await HTTP.get(node.baseURL + "/app.css")
        #expect(style.status == 200 && style.header("Content-Type") == "text/css; charset=utf-8")
        #expect(try await HTTP.get(node.baseURL + "/rooms/r/messages").header("X-Content-Type-Options") == "nosniff")
        // The operator's token endpoint elsewhere may be fetched, and nothing more.
        let withTokenURL = try await AccessControlTests.node(["--page-token-url", "https://app.example.test:8443/token"])
        defer { withTokenURL.kill() }
        let other = try #require(try await HTTP.get(withTokenURL.baseURL + "/").header("Content-Security-Policy"))
        #expect(other.contains("connect-src 'self' https://app.example.test:8443;"), "\(other)")
    }
}

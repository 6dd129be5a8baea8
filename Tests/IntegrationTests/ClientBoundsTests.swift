import Foundation
import TestSupport
import Testing

/// What one client may hold or ask of a node, each bound tried past its limit on a real node:
/// streams per address and per user, connections per address, tickets per user, and the request
/// bucket of stream opens, reads, tickets and refused tokens. Another client is served all along.
@Suite struct ClientBoundsTests {
    /// Opens a stream of `room` from `address`; its status line (and, if open, the socket).
    static func stream(_ node: RelayProcess, from address: String, room: String = "r", headers: String = "") async throws -> (
        String, RawSocket
    ) {
        let socket = try RawSocket(port: node.port, from: address, receiveBuffer: 65536)
        try socket.send("GET /rooms/\(room)/events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\(headers)\r\n")
        let answer = await socket.receive(until: { $0.contains(": chat-relay node") || $0.contains("\"}") }, timeout: .seconds(10))
        return (answer, socket)
    }

    /// `method path` from `address` on a connection of its own; the whole answer.
    static func request(_ node: RelayProcess, _ method: String, _ path: String, from address: String, headers: String = "") async throws
        -> String
    {
        let socket = try RawSocket(port: node.port, from: address, receiveBuffer: 65536)
        defer { socket.close() }
        try socket.send("\(method) \(path) HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\(headers)\r\n")
        return await socket.receive(until: { _ in false }, timeout: .seconds(10))
    }

    /// The default: one client takes a quarter of a node's streams, never all of them.
    @Test func oneAddressCannotTakeEveryStream() async throws {
        let node = try await RelayProcess(arguments: ["--max-connections", "8"])
        defer { node.kill() }
        var open: [RawSocket] = []
        for _ in 0..<2 {
            let (answer, socket) = try await Self.stream(node, from: "127.0.0.21")
            #expect(answer.hasPrefix("HTTP/1.1 200 OK"), "\(answer)")
            open.append(socket)
        }
        let (refused, _) = try await Self.stream(node, from: "127.0.0.21")
        #expect(refused.hasPrefix("HTTP/1.1 429 Too Many Requests"), "\(refused)")
        #expect(refused.contains("\"error\":\"too_many_streams\"") && refused.contains("Retry-After: 5\r\n"))
        // Another client still gets a stream.
        let (other, _) = try await Self.stream(node, from: "127.0.0.22")
        #expect(other.hasPrefix("HTTP/1.1 200 OK"), "\(other)")
        // A stream that closes gives its place back.
        open[0].close()
        var reopened = ""
        for _ in 0..<100 where !reopened.hasPrefix("HTTP/1.1 200") {
            (reopened, _) = try await Self.stream(node, from: "127.0.0.21")
            if !reopened.hasPrefix("HTTP/1.1 200") { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(reopened.hasPrefix("HTTP/1.1 200 OK"))
        withExtendedLifetime(open) {}
        #expect(
            try await NodeAbuseTests.rawGet(node, "/metrics").contains("chat_relay_requests_refused_total{reason=\"streams_per_client\"} "))
    }

    @Test func aUsersStreamsAreBoundedWhateverTheirAddresses() async throws {
        let node = try await AccessControlTests.node(["--max-streams-per-user", "2"])
        defer { node.kill() }
        let alice = "Authorization: Bearer \(try await AccessControlTests.token("alice"))\r\n"
        let bob = "Authorization: Bearer \(try await AccessControlTests.token("bob"))\r\n"
        var open: [RawSocket] = []
        for address in ["127.0.0.31", "127.0.0.32"] {
            let (answer, socket) = try await Self.stream(node, from: address, room: "team-a", headers: alice)
            #expect(answer.hasPrefix("HTTP/1.1 200 OK"), "\(answer)")
            open.append(socket)
        }
        let (third, _) = try await Self.stream(node, from: "127.0.0.33", room: "team-a", headers: alice)
        #expect(third.hasPrefix("HTTP/1.1 429") && third.contains("This user has 2 streams open"), "\(third)")
        let (bobs, _) = try await Self.stream(node, from: "127.0.0.33", room: "team-a", headers: bob)
        #expect(bobs.hasPrefix("HTTP/1.1 200 OK"), "\(bobs)")
        // A refusal for the user gives back the address's place it took.
        let (fromFirst, _) = try await Self.stream(node, from: "127.0.0.31", room: "team-a", headers: bob)
        #expect(fromFirst.hasPrefix("HTTP/1.1 200 OK"), "\(fromFirst)")
        withExtendedLifetime(open) {}
    }

    @Test func oneAddressCannotTakeEveryConnection() async throws {
        let node = try await RelayProcess(arguments: ["--max-connections-per-client", "5"])
        defer { node.kill() }
        var idle: [RawSocket] = []
        for _ in 0..<5 {
            let socket = try RawSocket(port: node.port, from: "127.0.0.41", receiveBuffer: 65536)
            try socket.send("GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(await socket.receive(until: { $0.hasSuffix("}") }, timeout: .seconds(10)).hasPrefix("HTTP/1.1 200 OK"))
            idle.append(socket)
        }
        // The sixth: its first request answered 429, then closed.
        let sixth = try RawSocket(port: node.port, from: "127.0.0.41", receiveBuffer: 65536)
        try sixth.send("GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        let refusal = await sixth.receive(until: { _ in false }, timeout: .seconds(10))
        #expect(refusal.hasPrefix("HTTP/1.1 429 Too Many Requests") && refusal.contains("\"error\":\"too_many_connections\""), "\(refusal)")
        #expect(refusal.contains("Connection: close\r\n") && sixth.peerClosed())
        // Past 8 refusals waiting at once, closed unanswered.
        var waiting: [RawSocket] = []
        let baseline = NodeAbuseTests.descriptors(node)
        for _ in 0..<8 { waiting.append(try RawSocket(port: node.port, from: "127.0.0.41", receiveBuffer: 4096)) }
        // All eight taken in (the node's event loops take connections in no set order), before
        // the ninth is tried.
        var accepted = false
        for _ in 0..<200 where !accepted {
            accepted = NodeAbuseTests.descriptors(node) >= baseline + 8
            if !accepted { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(accepted)
        var dropped = false
        var answers: [String] = []
        for _ in 0..<50 where !dropped {
            let socket = try RawSocket(port: node.port, from: "127.0.0.41", receiveBuffer: 4096)
            try? socket.send("GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            let answer = await socket.receive(until: { _ in false }, timeout: .seconds(5))
            dropped = answer.isEmpty && socket.peerClosed()
            answers.append(String(answer.prefix(40)))
            if !dropped { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(dropped, "\(answers)")
        // Another address is served all along.
        #expect(try await Self.request(node, "GET", "/health/live", from: "127.0.0.42").hasPrefix("HTTP/1.1 200 OK"))
        // Held open until here (a socket closes when it is released).
        withExtendedLifetime((idle, waiting)) {}
    }

    @Test func aUserHasABoundedNumberOfTicketsWaiting() async throws {
        let node = try await AccessControlTests.node(["--max-tickets-per-user", "3", "--ticket-ttl", "3s"])
        defer { node.kill() }
        let alice = try await AccessControlTests.token("alice")
        var statuses: [Int] = []
        var refusal: HTTP.Reply?
        for _ in 0..<4 {
            let reply = try await HTTP.request("POST", node.baseURL + "/auth/tickets", headers: AccessControlTests.bearer(alice))
            statuses.append(reply.status)
            if reply.status == 429 { refusal = reply }
        }
        #expect(statuses == [201, 201, 201, 429])
        #expect(refusal?.json["error"] as? String == "too_many_tickets")
        #expect(refusal.flatMap { Int($0.header("Retry-After") ?? "") }.map { (1...3).contains($0) } == true)
        let bob = try await AccessControlTests.token("bob")
        #expect(try await HTTP.request("POST", node.baseURL + "/auth/tickets", headers: AccessControlTests.bearer(bob)).status == 201)
        // Once the oldest has run out, one more.
        var again = 0
        for _ in 0..<100 where again != 201 {
            again = try await HTTP.request("POST", node.baseURL + "/auth/tickets", headers: AccessControlTests.bearer(alice)).status
            if again != 201 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(again == 201)
    }

    @Test func streamOpensReadsAndRefusedTokensShareABucket() async throws {
        let node = try await AccessControlTests.node([
            "--request-rate-limit", "0.01", "--request-rate-burst", "6", "--public-rooms", "open",
        ])
        defer { node.kill() }
        // Reads from one address: the burst, then 429 for history, presence and a stream alike.
        var statuses: [String] = []
        for path in ["/rooms/open/messages", "/rooms/open/presence", "/rooms/open/messages", "/rooms/open/messages"] {
            statuses.append(String(try await Self.request(node, "GET", path, from: "127.0.0.51").prefix(12)))
        }
        let (stream, _) = try await Self.stream(node, from: "127.0.0.51", room: "open")
        #expect(stream.hasPrefix("HTTP/1.1 200"))
        statuses.append(String(try await Self.request(node, "GET", "/rooms/open/messages", from: "127.0.0.51").prefix(12)))
        let limited = try await Self.request(node, "GET", "/rooms/open/messages", from: "127.0.0.51")
        #expect(statuses == Array(repeating: "HTTP/1.1 200", count: 5))
        #expect(
            limited.hasPrefix("HTTP/1.1 429") && limited.contains("\"error\":\"rate_limited\"") && limited.contains("Retry-After:"),
            "\(limited)")
        let (limitedStream, _) = try await Self.stream(node, from: "127.0.0.51", room: "open")
        #expect(limitedStream.hasPrefix("HTTP/1.1 429"), "\(limitedStream)")
        // Another address is served; a POST has its own limit.
        #expect(try await Self.request(node, "GET", "/rooms/open/messages", from: "127.0.0.52").hasPrefix("HTTP/1.1 200"))

        // Refused tokens take from the bucket: bad tokens spent it, so a good one is refused too,
        // before it is checked.
        for _ in 0..<6 {
            let socket = try RawSocket(port: node.port, from: "127.0.0.53", receiveBuffer: 65536)
            let body = #"{"text":"hi"}"#
            try socket.send(
                "POST /rooms/team-a/messages HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer a.b.c\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
            )
            let answer = await socket.receive(until: { _ in false }, timeout: .seconds(10))
            #expect(answer.hasPrefix("HTTP/1.1 401"), "\(answer)")
        }
        let good = "Authorization: Bearer \(try await AccessControlTests.token("alice"))\r\n"
        let afterBadTokens = try await Self.request(node, "GET", "/rooms/team-a/messages", from: "127.0.0.53", headers: good)
        #expect(afterBadTokens.hasPrefix("HTTP/1.1 429"), "\(afterBadTokens)")
    }
}

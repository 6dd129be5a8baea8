import Foundation
import JWTKit
import TestSupport
import Testing

/// `--auth jwt` on real nodes: tokens by header, cookie and ticket; identities from the token;
/// grants and public rooms; 401/403 with their reasons counted; streams that end with their
/// token and resume; keys from a JWKS URL that rotates and goes down.
@Suite struct AccessControlTests {
    static let secret = "a secret of sixty-four bytes, enough for HS512 as well as HS256.."

    struct Claims: JWTPayload {
        var sub: SubjectClaim
        var name: String?
        var exp: ExpirationClaim
        var rooms: [String: [String]]?
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    /// A token signed with the test secret (HS256).
    static func token(
        _ sub: String = "alice", name: String? = nil, expiresIn: Double = 600, subscribe: [String] = ["team-*"],
        publish: [String] = ["team-*"]
    ) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return try await keys.sign(
            Claims(
                sub: SubjectClaim(value: sub), name: name, exp: ExpirationClaim(value: Date().addingTimeInterval(expiresIn)),
                rooms: ["subscribe": subscribe, "publish": publish]))
    }

    /// A file holding the secret, with the trailing newline an editor adds.
    static func secretFile() throws -> String {
        let path = NSTemporaryDirectory() + "chat-relay-secret-\(UUID().uuidString.prefix(8))"
        try (secret + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func node(_ arguments: [String] = [], nodeID: String? = nil) async throws -> RelayProcess {
        try await RelayProcess(
            nodeID: nodeID ?? "auth-\(UInt32.random(in: 0...UInt32.max))",
            arguments: ["--auth", "jwt", "--jwt-secret-file", try secretFile(), "--rate-limit", "0"] + arguments)
    }

    static func bearer(_ token: String) -> [(String, String)] { [("Authorization", "Bearer \(token)")] }

    /// A labelled counter's value from `/metrics`.
    static func counter(_ node: RelayProcess, _ series: String) async throws -> Double {
        let metrics = try await HTTP.get(node.baseURL + "/metrics").body
        return metrics.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
            ?? 0
    }

    @Test func missingBadAndExpiredTokensGet401AndNoGrantGets403() async throws {
        let node = try await Self.node()
        defer { node.kill() }
        let url = node.baseURL + "/rooms/team-a/messages"

        let missing = try await HTTP.postMessage(url, user: "u", text: "hi")
        #expect(missing.status == 401)
        #expect(missing.json["error"] as? String == "unauthorized")
        #expect(missing.header("WWW-Authenticate") == "Bearer realm=\"chat-relay\"")
        let stream = try await HTTP.get(node.baseURL + "/rooms/team-a/events")
        #expect(stream.status == 401)

        let good = try await Self.token()
        var forged = good
        forged.removeLast(3)
        forged += good.hasSuffix("AAA") ? "BBB" : "AAA"
        let bad = try await HTTP.postMessage(url, user: "u", text: "hi", headers: Self.bearer(forged))
        #expect(bad.status == 401)
        #expect(bad.header("WWW-Authenticate") == "Bearer realm=\"chat-relay\", error=\"invalid_token\"")
        #expect(!bad.body.contains(forged) && !bad.body.contains(String(forged.prefix(20))), "the token is never echoed: \(bad.body)")

        let expired = try await HTTP.postMessage(url, user: "u", text: "hi", headers: Self.bearer(try await Self.token(expiresIn: -120)))
        #expect(expired.status == 401)
        #expect((expired.json["message"] as? String)?.contains("expired") == true)

        let basic = try await HTTP.postMessage(url, user: "u", text: "hi", headers: [("Authorization", "Basic dTpw")])
        #expect(basic.status == 401)

        let readOnly = try await Self.token(publish: [])
        let forbidden = try await HTTP.postMessage(url, user: "u", text: "hi", headers: Self.bearer(readOnly))
        #expect(forbidden.status == 403)
        #expect(forbidden.json["error"] as? String == "forbidden")
        let elsewhere = try await HTTP.get(node.baseURL + "/rooms/private/messages", headers: Self.bearer(good))
        #expect(elsewhere.status == 403, "history follows the subscribe grant")

        #expect(try await Self.counter(node, "chat_relay_auth_failures_total{reason=\"missing\"}") == 2)
        #expect(try await Self.counter(node, "chat_relay_auth_failures_total{reason=\"signature\"}") == 1)
        #expect(try await Self.counter(node, "chat_relay_auth_failures_total{reason=\"expired\"}") == 1)
        #expect(try await Self.counter(node, "chat_relay_auth_failures_total{reason=\"malformed\"}") == 1)
        #expect(try await Self.counter(node, "chat_relay_auth_failures_total{reason=\"forbidden\"}") == 2)
        let log = node.log()
        #expect(log.contains("reason=forbidden") && log.contains("sub=alice"), "the log names the reason and sub")
        #expect(!log.contains(good) && !log.contains(readOnly), "the log never holds a token")
    }

    /// A node on an RSA public key, with an issuer and an audience: RS256 tokens for it get in;
    /// `alg: none`, HS256 "signed" with the node's public key, tokens not yet valid, from another
    /// issuer or for another audience do not, each counted under its reason.
    @Test func algorithmsIssuerAudienceAndNotBeforeOverHTTP() async throws {
        let keyFile = NSTemporaryDirectory() + "chat-relay-rsa-\(UUID().uuidString.prefix(8)).pem"
        try RSATestKey.publicPEM.write(toFile: keyFile, atomically: true, encoding: .utf8)
        let node = try await RelayProcess(arguments: [
            "--auth", "jwt", "--jwt-public-key-file", keyFile, "--jwt-issuer", "https://id.example", "--jwt-audience", "chat",
        ])
        defer { node.kill() }
        struct Full: JWTPayload {
            var sub = SubjectClaim(value: "dave")
            var exp = ExpirationClaim(value: Date().addingTimeInterval(600))
            var nbf: NotBeforeClaim?
            var iss: IssuerClaim? = "https://id.example"
            var aud: AudienceClaim? = "chat"
            var rooms = ["publish": ["*"]]
            func verify(using algorithm: some JWTAlgorithm) async throws {}
        }
        let rsa = JWTKeyCollection()
        await rsa.add(rsa: try Insecure.RSA.PrivateKey(pem: RSATestKey.privatePEM), digestAlgorithm: .sha256)
        let url = node.baseURL + "/rooms/r/messages"
        func post(_ token: String) async throws -> HTTP.Reply {
            try await HTTP.postMessage(url, user: "u", text: "t", headers: Self.bearer(token))
        }
        #expect(try await post(try await rsa.sign(Full())).status == 201)

        let confused = JWTKeyCollection()
        await confused.add(hmac: HMACKey(from: RSATestKey.publicPEM), digestAlgorithm: .sha256)
        #expect(try await post(try await confused.sign(Full())).status == 401, "HS256 with the public key as the secret")
        func base64URL(_ text: String) -> String {
            Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        let unsigned =
            base64URL(#"{"alg":"none","typ":"JWT"}"#) + "."
            + base64URL(#"{"sub":"dave","exp":4102444800,"iss":"https://id.example","aud":"chat","rooms":{"publish":["*"]}}"#) + "."
        #expect(try await post(unsigned).status == 401, "alg: none")
        #expect(try await Self.counter(node, "chat_relay_auth_failures_total{reason=\"algorithm\"}") == 2)

        var early = Full()
        early.nbf = NotBeforeClaim(value: Date().addingTimeInterval(300))
        #expect(try await post(try await rsa.sign(early)).status == 401)
        var foreign = Full()
        foreign.iss = "https://other.example"
        #expect(try await post(try await rsa.sign(foreign)).status == 401)
        var elsewhere = Full()
        elsewhere.aud = "billing"
        #expect(try await post(try await rsa.sign(elsewhere)).status == 401)
        for reason in ["not_yet_valid", "issuer", "audience"] {
            #expect(try await Self.counter(node, "chat_relay_auth_failures_total{reason=\"\(reason)\"}") == 1, "\(reason)")
        }
    }

    /// A correctly signed token whose `exp` is centuries away (or as far as a double goes) once
    /// trapped an integer conversion: a ticket's lifetime, a cookie's Max-Age, a stream's end.
    @Test(arguments: [9.3e15, 1e300, Double.greatestFiniteMagnitude / 2])
    func aTokenThatExpiresCenturiesAheadIsServed(expiresIn: Double) async throws {
        let node = try await Self.node()
        defer { node.kill() }
        let token = try await Self.token(expiresIn: expiresIn)
        let stream = try await SSEClient(node.baseURL + "/rooms/team-a/events", headers: Self.bearer(token))
        #expect(stream.status == 200)
        let ticket = try await HTTP.request("POST", node.baseURL + "/auth/tickets", headers: Self.bearer(token))
        #expect(ticket.status == 201)
        #expect(ticket.json["expiresIn"] as? Int == 30)
        let ticketed = try await SSEClient(node.baseURL + "/rooms/team-a/events?ticket=\(try #require(ticket.json["ticket"] as? String))")
        #expect(ticketed.status == 200)
        let session = try await HTTP.request("POST", node.baseURL + "/auth/session", headers: Self.bearer(token))
        #expect(session.status == 204)
        #expect(session.header("Set-Cookie")?.contains("Max-Age=") == true)
        let posted = try await HTTP.postMessage(node.baseURL + "/rooms/team-a/messages", user: "x", text: "hi", headers: Self.bearer(token))
        #expect(posted.status == 201)
        #expect(await stream.waitForMessages(1))
        #expect(await ticketed.waitForMessages(1))
        #expect(node.isRunning)
    }

    /// A `sub` that looks like more fields stays one value in the text log (logfmt: quoted), so it
    /// cannot forge the reason of its own refusal.
    @Test func aSubjectCannotForgeFieldsOfTheLog() async throws {
        let node = try await Self.node()
        defer { node.kill() }
        let token = try await Self.token("eve reason=forged \"x\"", subscribe: [], publish: [])
        let reply = try await HTTP.postMessage(node.baseURL + "/rooms/team-a/messages", user: "u", text: "hi", headers: Self.bearer(token))
        #expect(reply.status == 403)
        let line = try #require(node.log().split(separator: "\n").first { $0.contains("access refused") })
        #expect(line.contains(#"sub="eve reason=forged \"x\"""#), "\(line)")
        // Outside the quoted value, one reason: the true one.
        let unquoted = line.replacingOccurrences(of: #"sub="eve reason=forged \"x\"""#, with: "sub=…")
        #expect(unquoted.contains(" reason=forbidden ") && !unquoted.contains("reason=forged"), "\(line)")
    }

    @Test func theMessagesAuthorIsTheTokensSubjectWhateverTheBodySays() async throws {
        let node = try await Self.node()
        defer { node.kill() }
        let token = try await Self.token("alice", name: "Alice Liddell")
        let subscriber = try await SSEClient(node.baseURL + "/rooms/team-a/events", headers: Self.bearer(token))
        #expect(subscriber.status == 200)
        let reply = try await HTTP.postMessage(
            node.baseURL + "/rooms/team-a/messages", user: "mallory", text: "hello", headers: Self.bearer(token))
        #expect(reply.status == 201, "\(reply.body)")
        #expect(reply.json["user"] as? String == "alice")
        #expect(reply.json["name"] as? String == "Alice Liddell")
        // No user in the body at all: the token's.
        let bare = try await HTTP.request(
            "POST", node.baseURL + "/rooms/team-a/messages", headers: [("Content-Type", "application/json")] + Self.bearer(token),
            body: Array(#"{"text":"no user"}"#.utf8))
        #expect(bare.status == 201)
        #expect(bare.json["user"] as? String == "alice")
        #expect(await subscriber.waitForMessages(2))
        #expect(subscriber.messages.map { $0["user"] as? String } == ["alice", "alice"])
    }

    @Test func publicRoomsAreReadableWithoutATokenButNotWritable() async throws {
        let node = try await Self.node(["--public-rooms", "news-*,lobby"])
        defer { node.kill() }
        let reader = try await SSEClient(node.baseURL + "/rooms/news-today/events")
        #expect(reader.status == 200)
        #expect(try await SSEClient(node.baseURL + "/events").status == 200)
        #expect(try await HTTP.get(node.baseURL + "/rooms/news-today/messages").status == 200)
        #expect(try await HTTP.get(node.baseURL + "/rooms/team-a/events").status == 401)
        #expect(try await HTTP.postMessage(node.baseURL + "/rooms/news-today/messages", user: "u", text: "x").status == 401)
        // A token without a grant for the public room still reads it; posting needs the grant.
        let token = try await Self.token(subscribe: [], publish: ["news-*"])
        #expect(
            try await HTTP.postMessage(node.baseURL + "/rooms/news-today/messages", user: "u", text: "x", headers: Self.bearer(token))
                .status == 201)
        #expect(await reader.waitForMessages(1))
    }

    /// A stream of several rooms needs the grant (or a public room) for every one of them; a
    /// ticket, taken once, opens it.
    @Test func aStreamOfSeveralRoomsIsCheckedRoomByRoom() async throws {
        let node = try await Self.node(["--public-rooms", "news-*"])
        defer { node.kill() }
        let token = try await Self.token(subscribe: ["team-*"])
        let granted = "/events?room=team-a&room=news-today&room=team-b"
        #expect(try await SSEClient(node.baseURL + granted, headers: Self.bearer(token)).status == 200)
        let refused = try await HTTP.get(node.baseURL + "/events?room=team-a&room=private&room=team-b", headers: Self.bearer(token))
        #expect(refused.status == 403)
        #expect((refused.json["message"] as? String)?.contains("private") == true)
        // Without a token, only a stream of public rooms.
        #expect(try await SSEClient(node.baseURL + "/events?room=news-a&room=news-b").status == 200)
        #expect(try await HTTP.get(node.baseURL + "/events?room=news-a&room=team-a").status == 401)
        let ticket = try #require(
            try await HTTP.request("POST", node.baseURL + "/auth/tickets", headers: Self.bearer(token)).json["ticket"] as? String)
        let stream = try await SSEClient(node.baseURL + granted + "&ticket=\(ticket)")
        #expect(stream.status == 200)
        #expect(
            try await HTTP.postMessage(node.baseURL + "/rooms/team-b/messages", user: "u", text: "x", headers: Self.bearer(token)).status
                == 201)
        #expect(await stream.waitForMessages(1))
        #expect(stream.messages.first?["room"] as? String == "team-b")
        // Typing is the token's identity, with the publish grant; a body's user is ignored.
        let named = try await Self.token(name: "Alice L.")
        let typing = try await HTTP.request(
            "POST", node.baseURL + "/rooms/team-b/typing", headers: [("Content-Type", "application/json")] + Self.bearer(named),
            body: Array(#"{"user":"mallory"}"#.utf8))
        #expect(typing.status == 204)
        #expect(await stream.wait { $0.events.contains { $0.type == "typing" } })
        let signal =
            try JSONSerialization.jsonObject(with: Data((stream.events.first { $0.type == "typing" }?.data ?? "{}").utf8)) as? [String: Any]
        #expect(signal?["user"] as? String == "alice" && signal?["name"] as? String == "Alice L." && signal?["verified"] as? Bool == true)
        let elsewhere = try await HTTP.request(
            "POST", node.baseURL + "/rooms/private/typing", headers: [("Content-Type", "application/json")] + Self.bearer(named),
            body: Array("{}".utf8))
        #expect(elsewhere.status == 403)
        #expect(
            try await HTTP.request(
                "POST", node.baseURL + "/rooms/team-b/typing", headers: [("Content-Type", "application/json")], body: Array("{}".utf8)
            ).status == 401)
    }

    @Test func aTicketOpensOneStreamOnceOnAnyNodeOfTheCluster() async throws {
        let redis = try await RedisServer(appendOnly: false)
        defer { redis.killNow() }
        let first = try await Self.node(["--redis-url", redis.url, "--ticket-ttl", "4"])
        defer { first.kill() }
        let second = try await Self.node(["--redis-url", redis.url])
        defer { second.kill() }
        let third = try await Self.node(["--redis-url", redis.url])
        defer { third.kill() }
        let token = try await Self.token()

        let issued = try await HTTP.request("POST", first.baseURL + "/auth/tickets", headers: Self.bearer(token))
        #expect(issued.status == 201, "\(issued.body)")
        #expect(issued.header("Cache-Control") == "no-store")
        let ticket = try #require(issued.json["ticket"] as? String)
        #expect(issued.json["expiresIn"] as? Int == 4)

        let stream = try await SSEClient(second.baseURL + "/rooms/team-a/events?ticket=\(ticket)")
        #expect(stream.status == 200, "a ticket from one node opens a stream on another")
        for node in [first, second, third] {
            let again = try await HTTP.get(node.baseURL + "/rooms/team-a/events?ticket=\(ticket)")
            #expect(again.status == 401, "and only once, cluster-wide")
        }
        // The ticket carries the token's grants.
        let other = try #require(
            try await HTTP.request("POST", first.baseURL + "/auth/tickets", headers: Self.bearer(token)).json["ticket"] as? String)
        #expect(try await HTTP.get(second.baseURL + "/rooms/private/events?ticket=\(other)").status == 403)
        // A ticket not used in time is gone.
        let late = try #require(
            try await HTTP.request("POST", first.baseURL + "/auth/tickets", headers: Self.bearer(token)).json["ticket"] as? String)
        try await Task.sleep(for: .milliseconds(4500))
        #expect(try await HTTP.get(second.baseURL + "/rooms/team-a/events?ticket=\(late)").status == 401)
        // A ticket is not a token: it opens streams only.
        let spare = try #require(
            try await HTTP.request("POST", first.baseURL + "/auth/tickets", headers: Self.bearer(token)).json["ticket"] as? String)
        #expect(try await HTTP.get(first.baseURL + "/rooms/team-a/messages?ticket=\(spare)").status == 401)
        #expect(try await Self.counter(first, "chat_relay_tickets_issued_total") == 4)
        // Redis gone: a ticket cannot be checked, which is not the client's fault (503, retry).
        redis.killNow()
        let unchecked = try await HTTP.get(second.baseURL + "/rooms/team-a/events?ticket=\(String(repeating: "A", count: 43))")
        #expect(unchecked.status == 503, "\(unchecked.status) \(unchecked.body)")
    }

    @Test func aSessionCookieOpensStreamsAndPostsOnlyFromAllowedOrigins() async throws {
        let node = try await Self.node(["--allow-origin", "https://chat.example", "--trusted-proxies", "127.0.0.1"])
        defer { node.kill() }
        let token = try await Self.token()
        let session = try await HTTP.request("POST", node.baseURL + "/auth/session", headers: Self.bearer(token))
        #expect(session.status == 204)
        let cookie = try #require(session.header("Set-Cookie"))
        #expect(cookie.hasPrefix("chat_relay_token=\(token);"))
        #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"))
        #expect(!cookie.contains("Secure"), "not over TLS")
        let overTLS = try await HTTP.request(
            "POST", node.baseURL + "/auth/session", headers: Self.bearer(token) + [("X-Forwarded-Proto", "https")])
        #expect(overTLS.header("Set-Cookie")?.contains("; Secure") == true, "Secure behind a TLS-terminating proxy")

        let sent = [("Cookie", "theme=dark; chat_relay_token=\(token)")]
        let stream = try await SSEClient(
            node.baseURL + "/rooms/team-a/events", headers: sent + [("Origin", "https://chat.example")])
        #expect(stream.status == 200)
        #expect(stream.headers.first(name: "Access-Control-Allow-Credentials") == "true")
        #expect(stream.headers.first(name: "Access-Control-Allow-Origin") == "https://chat.example")
        let url = node.baseURL + "/rooms/team-a/messages"
        #expect(try await HTTP.postMessage(url, user: "u", text: "ok", headers: sent + [("Origin", "https://chat.example")]).status == 201)
        let crossSite = try await HTTP.postMessage(url, user: "u", text: "csrf", headers: sent + [("Origin", "https://evil.example")])
        #expect(crossSite.status == 403)
        #expect(try await HTTP.postMessage(url, user: "u", text: "no origin", headers: sent).status == 403)
        // The page the node serves itself posts from the node's own origin.
        #expect(try await HTTP.postMessage(url, user: "u", text: "own", headers: sent + [("Origin", node.baseURL)]).status == 201)
        // A stream by cookie from a foreign page (its EventSource names its origin): refused, and
        // its visitor is not put in the room's presence. Without an Origin (a same-origin GET) it
        // opens. History by cookie is kept from caches.
        let foreign = try await HTTP.get(
            node.baseURL + "/rooms/team-a/events?presence=1", headers: sent + [("Origin", "https://evil.example")])
        #expect(foreign.status == 403)
        let sameOrigin = try await SSEClient(node.baseURL + "/rooms/team-b/events", headers: sent)
        #expect(sameOrigin.status == 200)
        let history = try await HTTP.get(url, headers: sent)
        #expect(history.status == 200 && history.header("Cache-Control") == "no-store")
        let presence = try await HTTP.get(node.baseURL + "/rooms/team-a/presence", headers: Self.bearer(token))
        #expect(presence.header("Cache-Control") == "no-store")
        #expect((presence.json["members"] as? [Any])?.count == 1, "only the allowed stream's member: \(presence.body)")
        #expect(try await Self.counter(node, "chat_relay_auth_failures_total{reason=\"origin\"}") == 3)

        let preflight = try await HTTP.request(
            "OPTIONS", url, headers: [("Origin", "https://chat.example"), ("Access-Control-Request-Method", "POST")])
        #expect(preflight.header("Access-Control-Allow-Credentials") == "true")
        #expect(preflight.header("Access-Control-Allow-Headers")?.contains("Authorization") == true)

        let ended = try await HTTP.request("DELETE", node.baseURL + "/auth/session")
        #expect(ended.status == 204)
        #expect(ended.header("Set-Cookie")?.contains("Max-Age=0") == true)
    }

    @Test func aStreamEndsWhenItsTokenExpiresAndResumesWithAFreshOneLosingNothing() async throws {
        let node = try await Self.node(["--jwt-leeway", "0"])
        defer { node.kill() }
        let short = try await Self.token(expiresIn: 6)
        let shortExpiry = Date().addingTimeInterval(6)
        let stream = try await SSEClient(node.baseURL + "/rooms/team-a/events", headers: Self.bearer(short))
        #expect(stream.status == 200)
        let long = try await Self.token(expiresIn: 600)
        let url = node.baseURL + "/rooms/team-a/messages"
        var ids: [String] = []
        for index in 0..<3 {
            ids.append(
                try #require(
                    try await HTTP.postMessage(url, user: "u", text: "before \(index)", headers: Self.bearer(long)).json["id"] as? String))
        }
        #expect(await stream.wait(timeout: .seconds(15)) { $0.ended })
        #expect(stream.events.last?.type == "token-expired", "\(stream.events.map(\.type))")
        #expect((stream.events.last?.data ?? "").contains("token_expired"))
        // Normally all three; on a loaded machine the token may expire before the last arrive, and
        // the resumed stream then has them.
        #expect(ids.starts(with: stream.messageIDs))
        #expect(try await Self.counter(node, "chat_relay_subscribers_dropped_total{reason=\"token_expired\"}") == 1)
        // Posted while the client gets its new token.
        for index in 0..<2 {
            ids.append(
                try #require(
                    try await HTTP.postMessage(url, user: "u", text: "after \(index)", headers: Self.bearer(long)).json["id"] as? String))
        }
        let resumed = try await SSEClient(
            node.baseURL + "/rooms/team-a/events", headers: Self.bearer(long) + [("Last-Event-ID", stream.messageIDs.last ?? "0")])
        #expect(await resumed.waitForMessages(ids.count - stream.messageIDs.count))
        #expect(stream.messageIDs + resumed.messageIDs == ids, "every message once, in order, across the token change")
        // The expired token cannot come back (the stream ended a little before its exp: jitter).
        try await Task.sleep(for: .seconds(max(0, shortExpiry.timeIntervalSinceNow) + 1))
        #expect(try await HTTP.get(node.baseURL + "/rooms/team-a/events", headers: Self.bearer(short)).status == 401)
    }

    @Test func noneModeIsTheDefaultAndRefusesJWTFlagsWithoutIt() async throws {
        let open = try await RelayProcess()
        defer { open.kill() }
        #expect(try await HTTP.postMessage(open.baseURL + "/messages", user: "anyone", text: "hi").status == 201)
        #expect(try await HTTP.request("POST", open.baseURL + "/auth/tickets").status == 404)
        await #expect(throws: (any Error).self) {
            _ = try await RelayProcess(arguments: ["--jwt-secret-file", try Self.secretFile()])
        }
        await #expect(throws: (any Error).self) { _ = try await RelayProcess(arguments: ["--auth", "jwt"]) }
    }

    /// An identity provider's JWKS, served by a real HTTP server on loopback: keys rotate (a new
    /// kid is fetched when a token names it), unknown kids do not make the node fetch more than
    /// once per 5 s, and the cached keys keep working while the provider is down.
    @Test func keysFromAJWKSURLRotateAndOutliveTheProvider() async throws {
        let directory = NSTemporaryDirectory() + "chat-relay-jwks-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let first = ES256PrivateKey()
        let second = ES256PrivateKey()
        func publish(_ keys: [(String, ES256PrivateKey)]) throws {
            // Beside the signing keys, keys providers publish that verify nothing here: an X25519
            // encryption key and a type from the future. Once, either made the whole set unreadable.
            let set =
                keys.map { kid, key in
                    let parameters = key.publicKey.parameters!
                    return ["kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid, "x": parameters.x, "y": parameters.y]
                } + [
                    ["kty": "OKP", "crv": "X25519", "kid": "enc-1", "use": "enc", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"],
                    ["kty": "XYZ", "kid": "future"],
                ]
            try JSONSerialization.data(withJSONObject: ["keys": set]).write(to: URL(fileURLWithPath: directory + "/jwks.json"))
        }
        func token(_ key: ES256PrivateKey, kid: String) async throws -> String {
            let keys = JWTKeyCollection()
            await keys.add(ecdsa: key, kid: JWKIdentifier(string: kid))
            return try await keys.sign(
                Claims(
                    sub: SubjectClaim(value: "carol"), exp: ExpirationClaim(value: Date().addingTimeInterval(600)),
                    rooms: ["publish": ["*"]]),
                kid: JWKIdentifier(string: kid))
        }
        try publish([("k1", first)])
        let port = freeLoopbackPort()
        let logPath = directory + "/server.log"
        let server = try ChildProcess(
            "/usr/bin/python3", ["-u", "-m", "http.server", "\(port)", "--bind", "127.0.0.1", "--directory", directory], logPath: logPath)
        defer { server.signal(SIGKILL) }
        var up = false
        for _ in 0..<100 where !up {
            up = (try? await HTTP.get("http://127.0.0.1:\(port)/jwks.json", timeout: .seconds(1)).status) == 200
            if !up { try await Task.sleep(for: .milliseconds(50)) }
        }
        try #require(up, "the JWKS server started")
        func fetches() -> Int {
            ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").components(separatedBy: "GET /jwks.json").count - 1
        }
        let node = try await RelayProcess(arguments: [
            "--auth", "jwt", "--jwks-url", "http://127.0.0.1:\(port)/jwks.json", "--rate-limit", "0",
        ])
        defer { node.kill() }
        let url = node.baseURL + "/rooms/r/messages"
        #expect(
            try await HTTP.postMessage(url, user: "u", text: "k1", headers: Self.bearer(try await token(first, kid: "k1"))).status == 201)

        // Rotation: the provider adds k2; the first token that names it makes the node fetch again.
        try await Task.sleep(for: .seconds(5))  // past the refetch interval since the first fetch
        try publish([("k1", first), ("k2", second)])
        let rotated = try await HTTP.postMessage(url, user: "u", text: "k2", headers: Self.bearer(try await token(second, kid: "k2")))
        #expect(rotated.status == 201, "\(rotated.body)")

        // Unknown kids: refused, and at most one more fetch for all of them within the interval.
        let before = fetches()
        let started = ContinuousClock.now
        let stranger = ES256PrivateKey()
        for _ in 0..<10 {
            let reply = try await HTTP.postMessage(url, user: "u", text: "?", headers: Self.bearer(try await token(stranger, kid: "k9")))
            #expect(reply.status == 401)
        }
        // One fetch per 5 s at most, however many tokens (10 POSTs take well under 5 s but on a
        // loaded machine).
        let allowed = 1 + Int((ContinuousClock.now - started) / .seconds(5))
        #expect(fetches() - before <= allowed, "fetches for 10 unknown-kid tokens: \(fetches() - before), allowed \(allowed)")
        #expect(try await Self.counter(node, "chat_relay_auth_failures_total{reason=\"unknown_key\"}") == 10)

        // The provider goes down: known keys still verify.
        server.signal(SIGKILL)
        _ = await server.waitForExit(timeout: .seconds(5))
        try await Task.sleep(for: .seconds(5))
        #expect(
            try await HTTP.postMessage(url, user: "u", text: "?", headers: Self.bearer(try await token(stranger, kid: "k8"))).status == 401)
        #expect(
            try await HTTP.postMessage(url, user: "u", text: "k1 again", headers: Self.bearer(try await token(first, kid: "k1"))).status
                == 201)
        #expect(
            try await HTTP.postMessage(url, user: "u", text: "k2 again", headers: Self.bearer(try await token(second, kid: "k2"))).status
                == 201)
        #expect(node.log().contains("JWKS fetch failed; keeping the keys cached"))
        // Each key that verifies nothing was logged once, however many fetches saw it.
        #expect(node.log().components(separatedBy: "JWKS key skipped").count - 1 == 2, "\(node.log())")
    }
}

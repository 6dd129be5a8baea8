import Foundation
import TestSupport
import Testing

/// The chat page in a real browser: Debian's chromium, headless, driven over WebDriver.
/// `make test` installs chromium and chromium-driver; without them these tests fail rather than skip.
@Suite(.serialized)
struct ChatPageBrowserTests {
    /// The texts of the messages the page shows, in order.
    static let shownTexts = "return Array.from(document.querySelectorAll('#messages li .text')).map(e => e.textContent)"

    func join(_ page: BrowserSession, node: RelayProcess, room: String, name: String) async throws {
        try await page.open("\(node.baseURL)/?room=\(room)")
        try await page.clear("#name")
        try await page.type("#name", name)
        #expect(try await page.wait(until: "return document.getElementById('status').textContent === 'connected'"))
    }

    func send(_ page: BrowserSession, _ text: String) async throws {
        try await page.type("#text", text)
        try await page.click("#send")
    }

    func shows(_ page: BrowserSession, _ text: String) async throws -> Bool {
        try await page.wait(
            until:
                "return Array.from(document.querySelectorAll('#messages li .text')).some(e => e.textContent === arguments[0] || e.textContent === \(jsString(text)))"
        )
    }

    func jsString(_ text: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [text])
        return String(String(data: data, encoding: .utf8)!.dropFirst().dropLast())
    }

    @Test func twoBrowsersChatAndHTMLStaysText() async throws {
        let node = try await RelayProcess()
        defer { node.kill() }
        let driver = try await ChromeDriver()
        defer { driver.stop() }
        let alice = try await driver.newSession()
        let bob = try await driver.newSession()
        try await join(alice, node: node, room: "browsers", name: "alice")
        try await join(bob, node: node, room: "browsers", name: "bob")

        try await send(alice, "hello bob")
        #expect(try await shows(bob, "hello bob"))
        #expect(try await shows(alice, "hello bob"))

        // Enter sends too.
        try await bob.type("#text", "hi alice\n")
        #expect(try await shows(alice, "hi alice"))

        let html = "<img src=x onerror=\"document.title='pwned'\"><b>bold</b>"
        try await send(bob, html)
        #expect(try await shows(alice, html), "the markup arrives as text")
        #expect(try await alice.run("return document.querySelector('#messages b, #messages img') === null") as? Bool == true)
        #expect(try await alice.run("return document.title") as? String == "chat-relay")
        let users =
            try await alice.run("return Array.from(document.querySelectorAll('#messages li .user')).map(e => e.textContent)") as? [String]
        #expect(users == ["alice", "bob", "bob"])

        // A late joiner sees the room's recent history.
        let carol = try await driver.newSession()
        try await join(carol, node: node, room: "browsers", name: "carol")
        #expect(try await carol.run(Self.shownTexts) as? [String] == ["hello bob", "hi alice", html])
        for page in [alice, bob, carol] { await page.close() }
    }

    /// Two pages on two nodes (Redis), each following three rooms on one stream: messages reach
    /// the room they belong to (with an unread count elsewhere), each page shows who is here in the
    /// open room and who is typing.
    @Test func twoPagesFollowThreeRoomsOnOneStreamEachWithPresenceAndTyping() async throws {
        let cluster = try await ClusterTests.Cluster.start(nodes: 2)
        defer { cluster.kill() }
        let driver = try await ChromeDriver()
        defer { driver.stop() }
        let rooms = "room=pa&room=pb&room=pc"
        let alice = try await driver.newSession()
        let bob = try await driver.newSession()
        for (page, node, name) in [(alice, cluster.nodes[0], "alice"), (bob, cluster.nodes[1], "bob")] {
            try await page.open("\(node.baseURL)/?\(rooms)")
            try await page.clear("#name")
            try await page.type("#name", name)
            // The name counts once the field is left: the stream opens again under it.
            _ = try await page.run("document.getElementById('name').dispatchEvent(new Event('change'))")
            #expect(try await page.wait(until: "return document.getElementById('status').textContent === 'connected'"))
        }
        // One stream per page, whatever the number of rooms.
        for node in cluster.nodes {
            let metrics = try await HTTP.get(node.baseURL + "/metrics").body
            #expect(
                metrics.contains("chat_relay_open_streams 1"), "\(metrics.split(separator: "\n").filter { $0.contains("open_streams") })")
        }
        let followed = "return Array.from(document.querySelectorAll('#rooms button')).map(b => b.dataset.room)"
        #expect(try await alice.run(followed) as? [String] == ["pa", "pb", "pc"])

        // Who is here: both, on both pages, in the open room.
        let members = "return Array.from(document.querySelectorAll('#members li')).map(e => e.dataset.user).sort().join(',')"
        for page in [alice, bob] {
            #expect(try await page.wait(until: members.replacingOccurrences(of: "join(',')", with: "join(',') === 'alice,bob'")))
            #expect(try await page.run("return document.getElementById('online-count').textContent") as? String == "2 here")
        }

        // A message in pa: shown on both (pa is open on both).
        try await send(alice, "in pa")
        #expect(try await shows(bob, "in pa"))
        // Alice opens pc and writes there: bob sees an unread count on pc, and the message when he opens it.
        try await alice.click("#rooms button[data-room='pc']")
        try await send(alice, "in pc")
        #expect(try await bob.wait(until: "return document.querySelector(\"#rooms button[data-room='pc'] .unread\").textContent === '1'"))
        #expect(try await bob.run(Self.shownTexts) as? [String] == ["in pa"])
        try await bob.click("#rooms button[data-room='pc']")
        #expect(try await bob.run(Self.shownTexts) as? [String] == ["in pc"])

        // Alice's stream opens again from the position the page makes from its own per-room ids
        // (as it does after an error or a new room): accepted, and nothing is shown twice.
        _ = try await alice.run("connect()")
        #expect(try await alice.wait(until: "return document.getElementById('status').textContent === 'connected'"))
        try await send(bob, "after the reconnect")
        #expect(try await shows(alice, "after the reconnect"))
        #expect(try await alice.run(Self.shownTexts) as? [String] == ["in pc", "after the reconnect"])
        try await alice.click("#rooms button[data-room='pa']")
        #expect(try await alice.run(Self.shownTexts) as? [String] == ["in pa"])
        try await alice.click("#rooms button[data-room='pc']")

        // Bob types in pc without sending: alice, with pc open, sees it.
        try await bob.type("#text", "typing something")
        #expect(try await alice.wait(until: "return document.getElementById('typing').textContent === 'bob is typing…'"))
        #expect(try await bob.run("return document.getElementById('typing').textContent") as? String == "")

        // Bob's page closes: alice sees him leave.
        await bob.close()
        #expect(try await alice.wait(until: members.replacingOccurrences(of: "join(',')", with: "join(',') === 'alice'")))
        await alice.close()
    }

    @Test func reconnectsAfterTheNodeRestartsAndShowsWhatWasSentMeanwhile() async throws {
        let port = freeLoopbackPort()
        var node = try await RelayProcess(nodeID: "first", port: port, arguments: ["--retry-ms", "1500"])
        defer { node.kill() }
        let driver = try await ChromeDriver()
        defer { driver.stop() }
        let page = try await driver.newSession()
        try await join(page, node: node, room: "restart", name: "dana")
        try await send(page, "before the restart")
        #expect(try await shows(page, "before the restart"))

        node.signal(SIGKILL)
        _ = await node.waitForExit(timeout: .seconds(5))
        #expect(try await page.wait(until: "return document.getElementById('status').textContent === 'reconnecting'"))

        node = try await RelayProcess(nodeID: "second", port: port, arguments: ["--retry-ms", "1500"])
        let reply = try await HTTP.postMessage(node.baseURL + "/rooms/restart/messages", user: "erin", text: "sent while you were away")
        #expect(reply.status == 201)
        #expect(try await shows(page, "sent while you were away"))
        #expect(try await page.wait(until: "return document.getElementById('status').textContent === 'connected'"))
        await page.close()
    }

    /// `chat-relay token --sub … --ttl …` with the node's secret: what a developer runs.
    static func mint(secretFile: String, _ arguments: [String]) async throws -> String {
        let run = try await ChildProcess.run(RelayProcess.binaryPath, ["token", "--jwt-secret-file", secretFile] + arguments)
        #expect(run.status == 0, "\(run.errors)")
        return run.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `--auth jwt` on two nodes on Redis: two pages sign in with tokens minted by `chat-relay
    /// token` (from their URL's fragment), each on its own node, chat as their tokens' subjects,
    /// cannot open a room they have no grant for, and when a token expires the page says so and
    /// goes on with a new one, missing nothing.
    @Test func signedInPagesChatAcrossNodesWithinTheirGrants() async throws {
        let redis = try await RedisServer(appendOnly: false)
        defer { redis.killNow() }
        let secretFile = try AccessControlTests.secretFile()
        let arguments = ["--auth", "jwt", "--jwt-secret-file", secretFile, "--jwt-leeway", "0", "--redis-url", redis.url]
        let first = try await RelayProcess(nodeID: "page-1", arguments: arguments)
        defer { first.kill() }
        let second = try await RelayProcess(nodeID: "page-2", arguments: arguments)
        defer { second.kill() }
        let driver = try await ChromeDriver()
        defer { driver.stop() }

        let hana = try await Self.mint(
            secretFile: secretFile, ["--sub", "hana", "--name", "Hana", "--subscribe", "team-*", "--publish", "team-*", "--ttl", "10m"])
        let ivan = try await Self.mint(
            secretFile: secretFile, ["--sub", "ivan", "--subscribe", "team-*", "--publish", "team-*", "--ttl", "10m"])
        let left = try await driver.newSession()
        let right = try await driver.newSession()
        try await left.open("\(first.baseURL)/?room=team-page#token=\(hana)")
        try await right.open("\(second.baseURL)/?room=team-page#token=\(ivan)")
        // A token by link is shown, whose it is, and used only once the user says so.
        #expect(
            try await left.wait(until: "return document.getElementById('link-who').textContent.includes('Hana (hana)')"))
        #expect(try await left.run("return document.getElementById('status').textContent") as? String != "connected")
        #expect(try await left.run("return document.getElementById('token').value") as? String == "")
        for page in [left, right] { try await page.click("#link-accept") }
        // Ignored, a link's token is not used at all.
        let wary = try await driver.newSession()
        try await wary.open("\(first.baseURL)/?room=team-page#token=\(ivan)")
        #expect(try await wary.wait(until: "return document.getElementById('link-who').textContent.includes('ivan')"))
        try await wary.click("#link-ignore")
        #expect(try await wary.wait(until: "return document.getElementById('error').textContent !== ''"))
        #expect(
            try await wary.run("return document.getElementById('token').value + document.getElementById('who').textContent") as? String
                == "")
        await wary.close()
        for page in [left, right] {
            #expect(try await page.wait(until: "return document.getElementById('status').textContent === 'connected'"))
            #expect(try await page.run("return location.hash") as? String == "", "the token leaves the address bar")
        }
        #expect(try await left.run("return document.getElementById('who').textContent") as? String == "signed in as Hana")
        try await send(left, "from hana")
        try await send(right, "from ivan")
        for page in [left, right] {
            #expect(try await shows(page, "from hana"))
            #expect(try await shows(page, "from ivan"))
        }
        let users =
            try await left.run("return Array.from(document.querySelectorAll('#messages li .user')).map(e => e.textContent)") as? [String]
        #expect(users == ["hana", "ivan"], "each token's subject, not a name typed in")

        // Hana's page gets a token that expires in 3 s: when it does, the stream ends, a new ticket
        // is refused, and the page says why; a new token brings her back with what was said
        // meanwhile.
        let short = try await Self.mint(
            secretFile: secretFile, ["--sub", "hana", "--subscribe", "team-*", "--publish", "team-*", "--ttl", "3"])
        _ = try await left.run(
            "const t = document.getElementById('token'); t.value = arguments[0]; t.dispatchEvent(new Event('change'));", [short])
        #expect(
            try await left.wait(timeout: .seconds(30), until: "return document.getElementById('error').textContent.includes('valid token')")
        )
        try await send(right, "while you were out")
        let fresh = try await Self.mint(
            secretFile: secretFile, ["--sub", "hana", "--subscribe", "team-*", "--publish", "team-*", "--ttl", "10m"])
        _ = try await left.run(
            "const t = document.getElementById('token'); t.value = arguments[0]; t.dispatchEvent(new Event('change'));", [fresh])
        #expect(try await left.wait(until: "return document.getElementById('status').textContent === 'connected'"))
        #expect(try await shows(left, "while you were out"))

        // A room outside the grant: the page says it is not allowed, and goes on with the rooms it has.
        _ = try await right.run("document.getElementById('room').value = 'private'; document.getElementById('join').click();")
        #expect(try await right.wait(until: "return document.getElementById('error').textContent.includes('Not allowed')"))
        #expect(
            try await right.run("return Array.from(document.querySelectorAll('#rooms button')).map(b => b.dataset.room)") as? [String] == [
                "team-page"
            ])
        #expect(try await right.run("return document.getElementById('status').textContent") as? String == "connected")
        for page in [left, right] { await page.close() }
    }

    /// `--page-token-url`: the page gets its token from the operator's app (here a small server
    /// minting 4-second tokens for the user "kim", as an app would for its logged-in user), renews
    /// it before each expiry, and its stream goes on across the token changes with every message
    /// once, in order.
    @Test func renewsItsTokenFromTheOperatorsAppAndMissesNothing() async throws {
        let secretFile = try AccessControlTests.secretFile()
        let tokenPort = freeLoopbackPort()
        let nodePort = freeLoopbackPort()
        let script = NSTemporaryDirectory() + "chat-relay-token-server-\(tokenPort).py"
        try Self.tokenServer.write(toFile: script, atomically: true, encoding: .utf8)
        let log = NSTemporaryDirectory() + "chat-relay-token-server-\(tokenPort).log"
        let server = try ChildProcess(
            "/usr/bin/python3", ["-u", script, "\(tokenPort)", secretFile, "http://127.0.0.1:\(nodePort)"], logPath: log)
        defer { server.signal(SIGKILL) }
        // Listening before the page asks it (a busy machine starts Python slower than the node).
        #expect(await eventually { (try? RawSocket(port: tokenPort)) != nil }, "the token server listens")
        let node = try await RelayProcess(
            port: nodePort,
            arguments: ["--auth", "jwt", "--jwt-secret-file", secretFile, "--page-token-url", "http://127.0.0.1:\(tokenPort)/token"])
        defer { node.kill() }
        let driver = try await ChromeDriver()
        defer { driver.stop() }
        let page = try await driver.newSession()
        try await page.open("\(node.baseURL)/?room=team-renew")
        #expect(try await page.wait(until: "return document.getElementById('status').textContent === 'connected'"))
        #expect(try await page.run("return document.getElementById('who').textContent") as? String == "signed in as kim")

        // Ten seconds of messages from elsewhere: two or three of the page's tokens expire meanwhile.
        let publisher = try await AccessControlTests.token("pat", subscribe: [], publish: ["team-*"])
        var sent: [String] = []
        let until = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < until {
            let text = "m\(sent.count)"
            let reply = try await HTTP.postMessage(
                node.baseURL + "/rooms/team-renew/messages", user: "x", text: text, headers: AccessControlTests.bearer(publisher))
            #expect(reply.status == 201)
            sent.append(text)
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(try await shows(page, sent.last!))
        #expect(try await page.run(Self.shownTexts) as? [String] == sent, "every message once, in order, across token changes")
        try await send(page, "still here")
        #expect(try await shows(page, "still here"))
        #expect(try await page.run("return document.getElementById('error').textContent") as? String == "")
        let issued = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").components(separatedBy: "issued").count - 1
        #expect(issued >= 3, "tokens fetched by the page: \(issued)")
        #expect(
            try await HTTP.get(node.baseURL + "/metrics").body.contains("chat_relay_subscribers_dropped_total{reason=\"token_expired\"}"))
        await page.close()
    }

    /// An app's token endpoint for the test above: HS256 tokens for "kim", 4 seconds each, with
    /// CORS for the node's origin (the page fetches it with credentials).
    static let tokenServer = """
        import base64, hashlib, hmac, json, sys, time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        port, secret_path, origin = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        secret = open(secret_path, "rb").read().rstrip(b"\\n")
        def b64(data): return base64.urlsafe_b64encode(data).rstrip(b"=")
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
                claims = {"sub": "kim", "exp": int(time.time()) + 4, "rooms": {"subscribe": ["team-*"], "publish": ["team-*"]}}
                payload = b64(json.dumps(claims).encode())
                signature = b64(hmac.new(secret, header + b"." + payload, hashlib.sha256).digest())
                body = json.dumps({"token": (header + b"." + payload + b"." + signature).decode()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Allow-Credentials", "true")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                print("issued", flush=True)
        ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
        """

    @Test func showsErrorsFromTheNode() async throws {
        let node = try await RelayProcess(arguments: [
            "--rate-limit", "0.01", "--rate-burst", "3", "--max-message-bytes", "20", "--max-body-bytes", "200",
        ])
        defer { node.kill() }
        let driver = try await ChromeDriver()
        defer { driver.stop() }
        let page = try await driver.newSession()
        try await join(page, node: node, room: "errors", name: "fay")
        // Refused requests count against the rate too: the burst of 3 covers these two and the next.
        try await send(page, String(repeating: "z", count: 30))
        #expect(try await page.wait(until: "return document.getElementById('error').textContent.includes('20 bytes')"))
        try await page.clear("#text")
        try await send(page, String(repeating: "z", count: 300))
        #expect(try await page.wait(until: "return document.getElementById('error').textContent.includes('too large')"))
        try await page.clear("#text")
        try await send(page, "fits")
        #expect(try await shows(page, "fits"))
        try await send(page, "one too many")
        #expect(try await page.wait(until: "return document.getElementById('error').textContent.includes('too fast')"))
        await page.close()
    }
}

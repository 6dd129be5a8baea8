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

    /// `--auth jwt`: the page takes a token from its URL's fragment, posts as the token's subject,
    /// opens its stream with a ticket, and when the token expires says so and waits for a new one.
    @Test func chatsWithATokenAndAsksForANewOneWhenItExpires() async throws {
        let node = try await AccessControlTests.node(["--jwt-leeway", "0"])
        defer { node.kill() }
        let driver = try await ChromeDriver()
        defer { driver.stop() }
        let page = try await driver.newSession()
        let short = try await AccessControlTests.token("gus", expiresIn: 4)
        try await page.open("\(node.baseURL)/?room=team-page#token=\(short)")
        #expect(try await page.wait(until: "return document.getElementById('status').textContent === 'connected'"))
        #expect(try await page.run("return location.hash") as? String == "", "the token leaves the address bar")
        try await send(page, "signed in")
        #expect(try await shows(page, "signed in"))
        let users =
            try await page.run("return Array.from(document.querySelectorAll('#messages li .user')).map(e => e.textContent)") as? [String]
        #expect(users == ["gus"], "the token's subject, not a name typed in")

        // The token expires: the stream ends, a new ticket is refused, and the page says why.
        #expect(
            try await page.wait(timeout: .seconds(15), until: "return document.getElementById('error').textContent.includes('valid token')")
        )
        let fresh = try await AccessControlTests.token("gus", expiresIn: 600)
        let posted = try await HTTP.postMessage(
            node.baseURL + "/rooms/team-page/messages", user: "x", text: "while expired", headers: AccessControlTests.bearer(fresh))
        #expect(posted.status == 201)
        _ = try await page.run(
            "const t = document.getElementById('token'); t.value = arguments[0]; t.dispatchEvent(new Event('change'));", [fresh])
        #expect(try await page.wait(until: "return document.getElementById('status').textContent === 'connected'"))
        #expect(try await shows(page, "while expired"))
        await page.close()
    }

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

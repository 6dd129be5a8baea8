import Foundation

/// A `chromedriver` process on a free loopback port, driving Debian's headless `chromium` through
/// the W3C WebDriver protocol (plain JSON over HTTP).
public final class ChromeDriver: Sendable {
    public let port: Int
    private let process: ChildProcess

    public init() async throws {
        port = freeLoopbackPort()
        process = try ChildProcess("/usr/bin/chromedriver", ["--port=\(port)", "--allowed-ips=127.0.0.1"])
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let reply = try? await HTTP.get("http://127.0.0.1:\(port)/status", timeout: .seconds(1)), reply.status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw WebDriverError.failed("chromedriver did not start")
    }

    /// A new headless browser session.
    public func newSession() async throws -> BrowserSession {
        let profile = NSTemporaryDirectory() + "chat-relay-chromium-\(UUID().uuidString)"
        let capabilities: [String: Any] = [
            "capabilities": [
                "alwaysMatch": [
                    "browserName": "chrome",
                    "goog:chromeOptions": [
                        "binary": "/usr/bin/chromium",
                        "args": [
                            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            "--user-data-dir=\(profile)", "--window-size=420,800",
                        ],
                    ],
                ]
            ]
        ]
        let value = try await BrowserSession.call("POST", "http://127.0.0.1:\(port)/session", capabilities)
        guard let id = (value as? [String: Any])?["sessionId"] as? String else {
            throw WebDriverError.failed("no session id in \(String(describing: value))")
        }
        return BrowserSession(base: "http://127.0.0.1:\(port)/session/\(id)")
    }

    public func stop() {
        process.signal(SIGTERM)
    }
}

/// One browser session: navigate, type, click, run scripts.
public struct BrowserSession: Sendable {
    let base: String

    static func call(_ method: String, _ url: String, _ body: [String: Any]? = nil) async throws -> Any? {
        let bytes = try body.map { Array(try JSONSerialization.data(withJSONObject: $0)) }
        let reply = try await HTTP.request(method, url, headers: [("Content-Type", "application/json")], body: bytes, timeout: .seconds(60))
        let object = try JSONSerialization.jsonObject(with: Data(reply.body.utf8), options: [.fragmentsAllowed]) as? [String: Any]
        let value = object?["value"]
        if reply.status != 200 {
            throw WebDriverError.failed("\(method) \(url) → \(reply.status): \(reply.body.prefix(500))")
        }
        return value
    }

    public func open(_ url: String) async throws {
        _ = try await Self.call("POST", base + "/url", ["url": url])
    }

    private func element(_ css: String) async throws -> String {
        let value = try await Self.call("POST", base + "/element", ["using": "css selector", "value": css]) as? [String: Any]
        guard let id = value?.values.first as? String else { throw WebDriverError.failed("no element \(css)") }
        return id
    }

    /// Types into the element (appending to what it holds).
    public func type(_ css: String, _ text: String) async throws {
        let id = try await element(css)
        _ = try await Self.call("POST", base + "/element/\(id)/value", ["text": text])
    }

    public func clear(_ css: String) async throws {
        let id = try await element(css)
        _ = try await Self.call("POST", base + "/element/\(id)/clear", [:])
    }

    public func click(_ css: String) async throws {
        let id = try await element(css)
        _ = try await Self.call("POST", base + "/element/\(id)/click", [:])
    }

    /// Runs `script` (a function body) in the page and returns its result.
    public func run(_ script: String, _ arguments: [Any] = []) async throws -> Any? {
        try await Self.call("POST", base + "/execute/sync", ["script": script, "args": arguments])
    }

    /// Polls `script` until it returns true; false after `timeout`.
    public func wait(timeout: Duration = .seconds(15), until script: String) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await run(script) as? Bool == true { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    public func close() async {
        _ = try? await Self.call("DELETE", base)
    }
}

public enum WebDriverError: Error, CustomStringConvertible {
    case failed(String)
    public var description: String {
        switch self {
        case .failed(let text): text
        }
    }
}

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// A real SSE subscriber over HTTP: reads the stream in the background, parses it with the
/// independent `SSEParser`, and lets a test wait for what arrived.
public final class SSEClient: Sendable {
    private struct State {
        var parser = SSEParser()
        var events: [SSEParser.Event] = []
        var ended = false
        var error: String?
        var bytes = 0
    }

    public let status: Int
    public let headers: HTTPHeaders
    /// Shared with the reader task, which must not keep the client itself alive.
    private final class Shared: Sendable {
        let state = Mutex(State())
    }

    private let shared = Shared()
    private let reader = Mutex<Task<Void, Never>?>(nil)

    /// Opens `url` with optional headers (e.g. `Last-Event-ID`) and starts reading.
    public init(_ url: String, headers: [(String, String)] = []) async throws {
        var request = HTTPClientRequest(url: url)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.headers.add(name: "Accept", value: "text/event-stream")
        let response = try await HTTP.client.execute(request, timeout: .hours(2))
        status = Int(response.status.code)
        self.headers = response.headers
        let task = Task { [shared] in
            do {
                for try await chunk in response.body {
                    shared.state.withLock { state in
                        state.bytes += chunk.readableBytes
                        state.events += state.parser.feed(chunk.readableBytesView)
                    }
                }
            } catch {
                shared.state.withLock { $0.error = "\(error)" }
            }
            shared.state.withLock { $0.ended = true }
        }
        reader.withLock { $0 = task }
    }

    /// Every event so far.
    public var events: [SSEParser.Event] { shared.state.withLock { $0.events } }
    /// Only `message` events, their data decoded as JSON objects.
    public var messages: [[String: Any]] {
        events.filter { $0.type == "message" }.compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.data.utf8))) as? [String: Any]
        }
    }
    /// The ids of the `message` events so far, in arrival order.
    public var messageIDs: [String] { messages.compactMap { $0["id"] as? String } }
    public var comments: [String] { shared.state.withLock { $0.parser.comments } }
    public var retry: Int? { shared.state.withLock { $0.parser.retry } }
    /// True once the server ended the stream (or the connection failed).
    public var ended: Bool { shared.state.withLock { $0.ended } }
    public var receivedBytes: Int { shared.state.withLock { $0.bytes } }

    /// Waits until `condition` holds for this client, polling; false after `timeout`.
    @discardableResult
    public func wait(timeout: Duration = .seconds(10), until condition: (SSEClient) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition(self) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition(self)
    }

    /// Waits for at least `count` message events.
    @discardableResult
    public func waitForMessages(_ count: Int, timeout: Duration = .seconds(10)) async -> Bool {
        await wait(timeout: timeout) { $0.messages.count >= count }
    }

    /// Stops reading and closes the connection.
    public func close() {
        reader.withLock { $0?.cancel() }
    }

    deinit {
        reader.withLock { $0?.cancel() }
    }
}

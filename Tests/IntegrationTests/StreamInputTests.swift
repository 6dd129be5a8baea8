import Foundation
import TestSupport
import Testing

/// What a stream's client sends once its stream is open (it has no reason to send anything): a
/// few bytes are ignored and the stream goes on; past `StreamInboundGuard.limit` (16 KiB) its
/// stream ends; the node and its other streams are untouched either way.
@Suite struct StreamInputTests {
    static func openStream(_ node: RelayProcess, _ target: String) async throws -> RawSocket {
        let socket = try RawSocket(port: node.port, receiveBuffer: 65536)
        try socket.send("GET \(target) HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
        let opening = await socket.receive(until: { $0.contains(": chat-relay node") }, timeout: .seconds(10))
        try #require(opening.contains("200 OK"), "\(opening)")
        return socket
    }

    @Test(arguments: ["/rooms/r/events", "/events?room=r&room=s"])
    func bytesOnAnOpenStreamAreIgnored(target: String) async throws {
        let node = try await RelayProcess()
        defer { node.kill() }
        let bystander = try await SSEClient("\(node.baseURL)/rooms/r/events")
        let stream = try await Self.openStream(node, target)
        try stream.send("x")
        try stream.send("GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        let reply = try await HTTP.postMessage("\(node.baseURL)/rooms/r/messages", user: "a", text: "after the bytes")
        #expect(reply.status == 201)
        // The stream that sent them goes on: the message reaches it, and nothing answers its
        // "request".
        let received = await stream.receive(until: { $0.contains("after the bytes") }, timeout: .seconds(10))
        #expect(received.contains("after the bytes"))
        #expect(!received.contains("{\"status\":\"ok\"}"))
        #expect(await bystander.waitForMessages(1))
        #expect(node.isRunning)
    }

    @Test func aStreamWhoseClientFloodsItEndsAlone() async throws {
        let node = try await RelayProcess()
        defer { node.kill() }
        let bystander = try await SSEClient("\(node.baseURL)/rooms/r/events")
        let stream = try await Self.openStream(node, "/rooms/r/events")
        var sent = 0
        for _ in 0..<10 { sent += stream.sendWithoutWaiting([UInt8](repeating: UInt8(ascii: "a"), count: 4096)) }
        #expect(sent > 16 * 1024)
        // The node ends it: the chunked body's last chunk, then the close.
        let rest = await stream.receive(until: { _ in false }, timeout: .seconds(10))
        #expect(stream.peerClosed(), "\(rest)")
        let reply = try await HTTP.postMessage("\(node.baseURL)/rooms/r/messages", user: "a", text: "still here")
        #expect(reply.status == 201)
        #expect(await bystander.waitForMessages(1))
        #expect(node.isRunning)
    }
}

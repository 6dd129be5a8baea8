import NIOCore
import NIOEmbedded
import NIOPosix
import Synchronization
import Testing

@testable import ChatRelayHTTP

#if canImport(Glibc)
    import Glibc
#endif

/// The socket a stream's live events are sent to directly: the connection's own, lent by NIO, or
/// none.
@Suite struct ChannelSocketTests {
    @Test func anAcceptedConnectionLendsItsOwnSocket() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let accepted = group.next().makePromise(of: (any Channel).self)
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                accepted.succeed(channel)
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let received = ReceivedBytes()
        let client = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(received) }
            }
            .connect(to: server.localAddress!).get()
        let channel = try await accepted.futureResult.get()

        // Bytes sent to it arrive at this connection's client, not anywhere else.
        let bytes = Array("sent past NIO".utf8)
        let sent = try await channel.eventLoop.submit {
            channel.withSocket { socket in bytes.withUnsafeBytes { send(socket, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) } }
        }.get()
        #expect(sent == bytes.count)
        var waited = 0
        while received.text != "sent past NIO", waited < 250 {
            try await Task.sleep(for: .milliseconds(20))
            waited += 1
        }
        #expect(received.text == "sent past NIO")

        // The client's own channel is a TCP connection too, with another socket.
        let serverSocket = try await channel.eventLoop.submit { channel.withSocket { $0 } }.get()
        let clientSocket = try await client.eventLoop.submit { client.withSocket { $0 } }.get()
        #expect(clientSocket != nil && clientSocket != serverSocket)

        // Once closed, a channel lends nothing: its number may soon name another file.
        try await channel.close()
        #expect(try await channel.eventLoop.submit { channel.withSocket { $0 } }.get() == nil)

        try? await client.close()
        try await server.close()
        try await group.shutdownGracefully()
    }

    @Test func aChannelWithoutASocketHasNone() throws {
        let channel = EmbeddedChannel()
        #expect(channel.withSocket { $0 } == nil)
        _ = try channel.finish()
    }
}

/// Collects what a client channel reads, as text.
private final class ReceivedBytes: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    private let bytes = Mutex<[UInt8]>([])

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        bytes.withLock { $0 += buffer.readableBytesView }
    }

    var text: String { bytes.withLock { String(decoding: $0, as: UTF8.self) } }
}

import Logging
import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle

/// The node's HTTP/1 server, as a service: listens on `host:port`, gives every connection the
/// node's pipeline (`RelayNode.configureConnection`), and on graceful shutdown stops listening
/// and closes each connection once it has nothing under way (the drain ended the streams before).
struct RelayServer: Service {
    let node: RelayNode
    let host: String
    let port: Int

    func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let quiesce = ServerQuiescingHelper(group: group)
        let node = self.node
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            // A client that closes its side is noticed (a stream's client is gone) instead of
            // the connection being closed under a request still being answered.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            // Reads start at 512 bytes rather than NIO's 2048: a connection keeps its receive
            // buffer for as long as it is open, and a stream's connection reads one request head
            // of a few hundred bytes in its life. Larger requests (a POST) grow the next reads.
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
            .childChannelInitializer { channel in node.configureConnection(channel) }
            .bind(host: host, port: port)
            .get()
        node.logger.info("listening", metadata: ["address": "\(host):\(channel.localAddress?.port ?? port)"])
        do {
            try await gracefulShutdown()
        } catch {
            // Cancelled: stop at once.
            try? await channel.close()
            return
        }
        let closed = channel.eventLoop.makePromise(of: Void.self)
        quiesce.initiateShutdown(promise: closed)
        try? await closed.futureResult.get()
    }
}

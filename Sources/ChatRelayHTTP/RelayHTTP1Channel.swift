import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// The async channel Hummingbird serves HTTP/1 requests on.
typealias HTTPAsyncChannel = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

/// Hummingbird's HTTP/1 child channel, except that a connection whose requests the node serves
/// itself (a stream as its first request, message POSTs) becomes one of Hummingbird's only at the
/// first request of another kind, if ever.
///
/// Hummingbird keeps a task, an async channel and its buffers for every connection for as long as
/// it is open: about 23 KB per connection here, three times what a stream itself needs. A node
/// holds thousands of streams, so each connection starts with only NIO's HTTP codec and a
/// `DirectRequestHandler`, which reads the request heads. A stream request is opened there, on
/// the event loop, and the connection is left with nothing but that handler; POSTs are answered
/// there. Any other request (and a stream that cannot be opened) is handed to Hummingbird, which
/// then serves the connection as usual, with `HTTP1Channel`'s pipeline and loop.
///
/// Every connection is counted against `--max-open-connections` (`ConnectionLimiter`) and timed
/// by a `RequestTimeoutHandler` after the HTTP codec, whichever path serves it.
struct RelayHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    /// A connection, and what it became once its first request head arrived: Hummingbird's async
    /// channel, or nil when a stream took it (or it closed first).
    struct Connection: ServerChildChannelValue {
        let channel: any Channel
        let handedOver: EventLoopFuture<HTTPAsyncChannel?>
    }
    typealias Value = Connection

    let responder: HTTPChannelHandler.Responder
    let node: RelayNode

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Connection> {
        let node = self.node
        let admission = node.connections.admit()
        node.metrics.openConnections.increment()
        channel.closeFuture.whenComplete { _ in
            node.connections.release()
            node.metrics.openConnections.decrement()
        }
        if admission != .served { node.metrics.openConnectionsLimited.increment() }
        guard admission != .dropped else {
            channel.close(promise: nil)
            return channel.eventLoop.makeSucceededFuture(
                Connection(channel: channel, handedOver: channel.eventLoop.makeSucceededFuture(nil)))
        }
        return channel.eventLoop.makeCompletedFuture {
            // As `HTTP1Channel` sets it up, with its decoder limits.
            let limits = HTTP1Channel.Configuration.DecoderConfiguration()
            var decoderLimits = NIOHTTPDecoderLimitConfiguration()
            decoderLimits.maxHeaderFieldSize = limits.maxHeaderFieldSize
            decoderLimits.maxHeaderListSize = limits.maxHeaderListSize
            decoderLimits.maxHeaderFieldCount = limits.maxHeaderFieldCount
            let pipeline = channel.pipeline.syncOperations
            try pipeline.configureHTTPServerPipeline(
                withPipeliningAssistance: false,
                withErrorHandling: false,
                withOutboundHeaderValidation: false,
                withEncoderConfiguration: .init(),
                withDecoderLimitConfiguration: decoderLimits
            )
            let timeouts = RequestTimeoutHandler(node: node)
            try pipeline.addHandler(RequestTimeoutHandler.InboundBytes(timeouts), position: .first)
            try pipeline.addHandler(timeouts)
            let handedOver = channel.eventLoop.makePromise(of: HTTPAsyncChannel?.self)
            let refusal =
                admission == .refused
                ? APIError.unavailable(
                    "This node is at its limit of \(node.connections.limit) open connections; retry shortly or use another node.",
                    retryAfter: 2)
                : nil
            try pipeline.addHandler(
                DirectRequestHandler(node: node, eventLoop: channel.eventLoop, handedOver: handedOver, refusal: refusal, logger: logger))
            return Connection(channel: channel, handedOver: handedOver.futureResult)
        }
    }

    func handle(value: Connection, logger: Logger) async {
        // For a stream this returns as soon as it is open, for POSTs when the connection closes;
        // such a connection stays with its handler.
        guard let asyncChannel = try? await value.handedOver.get() else { return }
        await withTaskExecutorPreference(EventLoopTaskExecutor(eventLoop: asyncChannel.channel.eventLoop)) {
            await handleHTTP(asyncChannel: asyncChannel, logger: logger)
        }
    }
}

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
        channel.eventLoop.makeCompletedFuture {
            // As `HTTP1Channel` sets it up, with its decoder limits.
            let limits = HTTP1Channel.Configuration.DecoderConfiguration()
            var decoderLimits = NIOHTTPDecoderLimitConfiguration()
            decoderLimits.maxHeaderFieldSize = limits.maxHeaderFieldSize
            decoderLimits.maxHeaderListSize = limits.maxHeaderListSize
            decoderLimits.maxHeaderFieldCount = limits.maxHeaderFieldCount
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                withPipeliningAssistance: false,
                withErrorHandling: false,
                withOutboundHeaderValidation: false,
                withEncoderConfiguration: .init(),
                withDecoderLimitConfiguration: decoderLimits
            )
            let handedOver = channel.eventLoop.makePromise(of: HTTPAsyncChannel?.self)
            try channel.pipeline.syncOperations.addHandler(
                DirectRequestHandler(node: node, eventLoop: channel.eventLoop, handedOver: handedOver, logger: logger))
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

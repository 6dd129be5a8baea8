import ChatRelay
import NIOCore
import NIOHTTP1

/// A stream's connection as the hub's fan-out writes to it: below every HTTP handler.
///
/// Live events are already chunks (`StoredMessage.chunk`), framed once per event for every
/// subscriber, so they skip the HTTP layers. Two kinds of connection carry streams:
/// - a stream `StreamConnectionHandler` opened itself (`ownsResponse`): the HTTP codec has left
///   the pipeline, events are written from that handler's context, and the output ends the
///   response when the stream ends;
/// - a stream Hummingbird's router opened: its head and opening went through NIO's
///   `HTTPResponseEncoder`, which sends a response of unknown length chunked (the head is always
///   HTTP/1.1). Events are written from the encoder's context, and Hummingbird ends the response
///   (the last chunk) through the encoder, after them.
///
/// Invariant that makes `@unchecked Sendable` true: `context` and `writable` are used only on
/// `eventLoop`, which is all `StreamOutput` allows; `channel` is thread-safe; the rest is immutable.
final class ChannelStreamOutput: StreamOutput, @unchecked Sendable {
    let eventLoop: any EventLoop
    let channel: any Channel
    private let context: ChannelHandlerContext
    private let ownsResponse: Bool

    /// The output writing from `context`, on its channel's event loop.
    /// - Parameter ownsResponse: whether ending the stream ends the response and the connection.
    init(context: ChannelHandlerContext, ownsResponse: Bool) {
        self.eventLoop = context.eventLoop
        self.channel = context.channel
        self.context = context
        self.ownsResponse = ownsResponse
    }

    /// The output of `channel`, an HTTP/1 connection of Hummingbird's, which carries the stream
    /// from now on.
    static func make(for channel: any Channel) async throws -> ChannelStreamOutput {
        try await channel.eventLoop.submit {
            let pipeline = channel.pipeline.syncOperations
            let context = try pipeline.context(handlerType: HTTPResponseEncoder.self)
            // Hummingbird reads nothing while the stream's handler runs, so it would not notice
            // a client that closes its side; the stream would stay until a write failed.
            try pipeline.addHandler(CloseOnInputClosedHandler(), position: .first)
            return ChannelStreamOutput(context: context, ownsResponse: false)
        }.get()
    }

    func write(_ bytes: ByteBuffer) {
        context.write(NIOAny(bytes), promise: nil)
    }

    func flush() {
        context.flush()
    }

    /// Whether an output that owns its response is below its connection's high-water mark: kept
    /// by its `StreamConnectionHandler` as NIO reports changes, so the fan-out reads a field it
    /// already has in cache rather than the channel's atomic, once per subscriber per batch.
    var writable = true

    var isWritable: Bool { ownsResponse ? writable : channel.isWritable }

    func close() {
        channel.close(promise: nil)
    }

    func endResponse() {
        guard ownsResponse, channel.isActive else { return }
        // The last chunk, then the connection closes once it is sent: nothing else can follow a
        // stream on it.
        let channel = self.channel
        context.writeAndFlush(NIOAny(Self.lastChunk)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// The zero-length chunk that ends a chunked body.
    private static let lastChunk = ByteBuffer(staticString: "0\r\n\r\n")
}

/// Closes a stream's connection when the client closes its side of it (servers accept half-closed
/// connections, so that is an event, not a close).
final class CloseOnInputClosedHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

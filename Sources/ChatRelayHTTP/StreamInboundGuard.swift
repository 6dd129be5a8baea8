import NIOCore

/// What a stream's client sends once its stream is open: raw bytes (the HTTP decoder has left the
/// pipeline), which it has no reason to send. It takes the place of the decoder, so that nothing
/// after it ever sees a byte where it expects a request part: the decoder's leftovers (a request
/// pipelined behind the stream's) and every later read stop here, ignored. A client that sends
/// more than `limit` bytes has its stream (its connection) ended: it holds a place for nothing.
///
/// Every method runs on the channel's event loop.
final class StreamInboundGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    /// The most bytes a stream's client may send before its stream ends.
    static let limit = 16 * 1024

    private var received = 0
    private let limit: Int

    init(limit: Int = StreamInboundGuard.limit) {
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += unwrapInboundIn(data).readableBytes
        if received > limit {
            context.close(promise: nil)
        }
    }
}

import ChatRelay
import NIOCore
import NIOHTTP1

/// A stream's connection as the hub's fan-out writes to it: below the HTTP encoder.
///
/// Hummingbird sends a stream's head (and the opening this node writes through it) as a response
/// of unknown length, which NIO's `HTTPResponseEncoder` sends chunked (the head is always
/// HTTP/1.1). Live events are written from the encoder's context, so they skip the HTTP layers;
/// they are already chunks (`StoredMessage.chunk`), framed once per event for every subscriber.
/// Hummingbird's end of the response (the last chunk) still goes through the encoder, after them.
///
/// Invariant that makes `@unchecked Sendable` true: `context` is used only on `eventLoop`, which is
/// all `StreamOutput` allows; `channel` is thread-safe.
final class ChannelStreamOutput: StreamOutput, @unchecked Sendable {
    let eventLoop: any EventLoop
    private let channel: any Channel
    private let context: ChannelHandlerContext

    private init(channel: any Channel, context: ChannelHandlerContext) {
        self.eventLoop = channel.eventLoop
        self.channel = channel
        self.context = context
    }

    /// The output of `channel`, an HTTP/1 connection of Hummingbird's.
    static func make(for channel: any Channel) async throws -> ChannelStreamOutput {
        try await channel.eventLoop.submit {
            let context = try channel.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self)
            return ChannelStreamOutput(channel: channel, context: context)
        }.get()
    }

    func write(_ bytes: ByteBuffer) {
        context.write(NIOAny(bytes), promise: nil)
    }

    func flush() {
        context.flush()
    }

    var isWritable: Bool { channel.isWritable }

    func close() {
        channel.close(promise: nil)
    }
}

import ChatRelay
import NIOCore
import NIOHTTP1

extension DirectRequestHandler {
    /// Opens the stream on the event loop once the node has its opening.
    func open(_ request: DirectStreamRequest, context: ChannelHandlerContext) {
        let output = ChannelStreamOutput(context: context, ownsResponse: true, deferredWrites: node.metrics.streamWritesDeferred)
        self.output = output
        let node = self.node
        run(
            { () async throws(APIError) in
                try await node.openStream(room: request.room, lastEventID: request.lastEventID, output: output)
            }, context: context,
            then: { handler, result, context in
                handler.opened(result, origin: request.origin, context: context)
            })
    }

    private func opened(_ result: Result<RelayNode.StreamOpening, APIError>, origin: String?, context: ChannelHandlerContext) {
        guard case .opening(let readSince) = state else {
            // Closed meanwhile: the close already ended the subscription, if there was one.
            return
        }
        switch result {
        case .failure:
            // The router tries again and answers with the error if it fails too (draining, at the
            // connection limit, the broker unreachable).
            handOver(context: context, readSince: readSince)
        case .success(let opening):
            state = .streaming
            decide(nil)
            removeCodec(context: context)
            output?.beginDirectWrites()
            var head = node.directStreamHead(origin: origin)
            // The opening as one chunk after the head, in one buffer (one send): its header, the
            // bytes as they are, then CR LF.
            head.writeString(String(opening.firstBytes.readableBytes, radix: 16))
            head.writeStaticString("\r\n")
            head.writeImmutableBuffer(opening.firstBytes)
            head.writeStaticString("\r\n")
            output?.write(head)
            output?.flush()
            // Runs after this, on this loop.
            opening.subscription.goLive(after: opening.liveAfter)
            releaseHeldRead(context: context)
        }
    }

    /// Takes NIO's HTTP decoder and encoder out, and the request timeouts with them: a stream
    /// writes its own bytes (no handler between this one and the socket may expect HTTP parts),
    /// and keeps no parser, read buffer or timer for a client that has nothing more to send.
    private func removeCodec(context: ChannelHandlerContext) {
        let pipeline = context.pipeline.syncOperations
        if let timeouts = try? pipeline.context(handlerType: RequestTimeoutHandler.self) {
            pipeline.removeHandler(context: timeouts, promise: nil)
        }
        if let bytes = try? pipeline.context(handlerType: RequestTimeoutHandler.InboundBytes.self) {
            pipeline.removeHandler(context: bytes, promise: nil)
        }
        if let encoder = try? pipeline.context(handlerType: HTTPResponseEncoder.self) {
            pipeline.removeHandler(context: encoder, promise: nil)
        }
        if let decoder = try? pipeline.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self) {
            pipeline.removeHandler(context: decoder, promise: nil)
        }
    }
}

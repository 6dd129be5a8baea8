import ChatRelay
import HTTPTypes
import NIOCore
import NIOHTTP1

extension DirectRequestHandler {
    /// Publishes a POST's message on the event loop's executor, then answers it.
    func publish(_ request: DirectPublishRequest, body: ByteBuffer, context: ChannelHandlerContext) {
        let node = self.node
        run(
            { () async throws(APIError) in
                try await node.publish(try node.checkPublish(request.fields), body: body)
            }, context: context,
            then: { handler, result, context in
                handler.answer(request, with: result, context: context)
            })
    }

    /// Writes the answer with the headers the router's answers carry, then serves what was
    /// pipelined behind the request.
    private func answer(_ request: DirectPublishRequest, with result: Result<PublishAnswer, APIError>, context: ChannelHandlerContext) {
        guard case .publishing(_, let readSince) = state else { return }  // closed meanwhile
        let closing = request.closeAfter || closeWhenAnswered
        let head: HTTPResponseHead
        let body: ByteBuffer
        switch result {
        case .success(let answer):
            head = node.responseHead(
                status: answer.created ? .created : .ok, contentType: PublishAnswer.contentType,
                contentLength: answer.body.readableBytes, origin: request.origin, closing: closing
            ) {
                $0.add(name: "Location", value: answer.location)
            }
            body = answer.body
        case .failure(let error):
            (head, body) = node.errorResponse(error, origin: request.origin, closing: closing)
        }
        writeAnswer(head, body, closing: closing, context: context)
        if closing {
            state = .closed
            decide(nil)
            return
        }
        state = .awaitingHead(first: false)
        process(readSince, context: context)
        switch state {
        case .opening, .publishing:
            break  // the next request is being served: reads stay held
        case .awaitingHead, .receivingPublish, .streaming, .handedOver, .closed:
            releaseHeldRead(context: context)
        }
    }
}

extension ChannelOutboundHandler where OutboundOut == HTTPServerResponsePart {
    /// Writes a whole answer and flushes it; when `closing`, closes the connection once it is sent.
    func writeAnswer(_ head: HTTPResponseHead, _ body: ByteBuffer, closing: Bool, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        guard closing else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

import ChatRelay
import HTTPTypes
import NIOCore
import NIOHTTP1

extension DirectRequestHandler {
    /// Publishes a POST's message on the event loop's executor, then answers it.
    func publish(_ request: DirectPublishRequest, body: ByteBuffer, context: ChannelHandlerContext) {
        let node = self.node
        run({ () async throws(APIError) in
            try await node.publish(try node.checkPublish(request.fields), body: body)
        }, context: context) { handler, result, context in
            handler.answer(request, with: result, context: context)
        }
    }

    /// Writes the answer with the headers the router's answers carry, then serves what was
    /// pipelined behind the request.
    private func answer(_ request: DirectPublishRequest, with result: Result<PublishAnswer, APIError>, context: ChannelHandlerContext) {
        guard case .publishing(_, let readSince) = state else { return }  // closed meanwhile
        let closing = request.closeAfter || closeWhenAnswered
        var headers = HTTPHeaders()
        let status: HTTPResponseStatus
        let body: ByteBuffer
        switch result {
        case .success(let answer):
            status = answer.created ? .created : .ok
            headers.add(name: "Content-Type", value: PublishAnswer.contentType)
            headers.add(name: "Location", value: answer.location)
            body = answer.body
        case .failure(let error):
            status = HTTPResponseStatus(statusCode: Int(error.status.code), reasonPhrase: error.status.reasonPhrase)
            headers.add(name: "Content-Type", value: APIError.contentType)
            if let retryAfter = error.retryAfter { headers.add(name: "Retry-After", value: String(retryAfter)) }
            body = error.body
        }
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "X-Relay-Node", value: node.configuration.nodeID)
        if let origin = request.origin, let cors = node.cors {
            for field in cors.responseHeaders(origin: origin) {
                headers.add(name: field.name.rawName, value: field.value)
            }
        }
        headers.add(name: "Date", value: HTTPDate.now())
        if closing { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        if closing {
            state = .closed
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            decide(nil)
            return
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
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

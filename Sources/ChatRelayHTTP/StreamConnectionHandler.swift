import ChatRelay
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// The first handler of every HTTP/1 connection, after NIO's HTTP codec: it opens a stream asked
/// for by the connection's first request itself, and hands every other connection to Hummingbird.
///
/// - A stream (`RelayNode.directStreamRequest`): reads are held while the node opens it (latest id,
///   hub registration, replay). Then the HTTP codec leaves the pipeline, this handler writes the
///   head and the opening, and the hub's fan-out writes live events from this handler's context
///   (`ChannelStreamOutput`). The connection keeps no task, async channel or parser: only the
///   socket, this handler and the subscription.
/// - Anything else, or a stream the node could not open (the router then answers with the error):
///   Hummingbird's handlers and async channel are added behind this one, the request parts read
///   so far are passed on, and this handler leaves the pipeline.
///
/// Every method runs on the channel's event loop.
final class StreamConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// No request yet.
        case awaitingHead
        /// A stream is being opened; the request parts read since are kept in case it is handed over.
        case opening(readSince: [HTTPServerRequestPart])
        /// The stream is live; whatever the client sends now is ignored.
        case streaming
        /// Hummingbird serves the connection.
        case handedOver
        case closed
    }

    private let node: RelayNode
    private let logger: Logger
    /// Completed once: with Hummingbird's async channel, or nil.
    private let handedOver: EventLoopPromise<HTTPAsyncChannel?>
    private var decided = false
    private var state = State.awaitingHead
    /// A read asked for while a stream was being opened, to pass on once it is decided.
    private var readHeld = false
    /// The stream's output, once one is being opened.
    private var output: ChannelStreamOutput?

    init(node: RelayNode, handedOver: EventLoopPromise<HTTPAsyncChannel?>, logger: Logger) {
        self.node = node
        self.handedOver = handedOver
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .awaitingHead:
            let part = unwrapInboundIn(data)
            guard case .head(let head) = part, let request = node.directStreamRequest(head) else {
                handOver(context: context, readSince: [part])
                return
            }
            state = .opening(readSince: [part])
            open(request, context: context)
        case .opening(var readSince):
            readSince.append(unwrapInboundIn(data))
            state = .opening(readSince: readSince)
        case .handedOver:
            context.fireChannelRead(data)
        case .streaming, .closed:
            // Once the codec has left these are raw bytes; a stream's client has nothing to say.
            break
        }
    }

    func read(context: ChannelHandlerContext) {
        if case .opening = state {
            readHeld = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        output?.writable = context.channel.isWritable
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        output?.socketClosed()
        if case .handedOver = state {} else { state = .closed }
        decide(nil)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        output?.socketClosed()
        decide(nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .awaitingHead:
            // A first request NIO cannot parse: Hummingbird answers it, as on any connection.
            handOver(context: context, readSince: [], error: error)
        case .handedOver:
            context.fireErrorCaught(error)
        case .opening, .streaming, .closed:
            logger.debug("stream connection failed", metadata: ["error": "\(error)"])
            state = .closed
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        let ending: Bool
        if event is ChannelShouldQuiesceEvent {
            // The server is stopping (the drain ended the streams before).
            ending = true
        } else if let event = event as? ChannelEvent, event == .inputClosed {
            // The client closed its side: a stream's client is gone.
            ending = true
        } else {
            ending = false
        }
        switch state {
        case .awaitingHead, .opening, .streaming, .closed:
            if ending {
                state = .closed
                context.close(promise: nil)
                return
            }
        case .handedOver:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Opens the stream on the event loop once the node has its opening.
    private func open(_ request: DirectStreamRequest, context: ChannelHandlerContext) {
        let output = ChannelStreamOutput(context: context, ownsResponse: true, deferredWrites: node.metrics.streamWritesDeferred)
        self.output = output
        let node = self.node
        let opening = context.eventLoop.makePromise(of: RelayNode.StreamOpening.self)
        opening.completeWithTask {
            try await node.openStream(room: request.room, lastEventID: request.lastEventID, output: output)
        }
        opening.futureResult.assumeIsolated().whenComplete { result in
            self.opened(result, origin: request.origin, context: context)
        }
    }

    private func opened(_ result: Result<RelayNode.StreamOpening, any Error>, origin: String?, context: ChannelHandlerContext) {
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

    /// Hands the connection to Hummingbird: its HTTP/1 handlers and async channel go behind this
    /// handler, which passes on what it read and leaves.
    private func handOver(context: ChannelHandlerContext, readSince: [HTTPServerRequestPart], error: (any Error)? = nil) {
        let asyncChannel: HTTPAsyncChannel
        do {
            let pipeline = context.pipeline.syncOperations
            // As `HTTP1Channel.setup` adds them after the codec.
            try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false))
            try pipeline.addHandler(HTTPConnectionStateHandler(logger: logger))
            asyncChannel = try HTTPAsyncChannel(
                wrappingChannelSynchronously: context.channel,
                configuration: .init(isOutboundHalfClosureEnabled: true)
            )
        } catch {
            logger.debug("cannot hand the connection over", metadata: ["error": "\(error)"])
            state = .closed
            decide(nil)
            context.close(promise: nil)
            return
        }
        state = .handedOver
        decide(asyncChannel)
        for part in readSince {
            context.fireChannelRead(wrapInboundOut(part))
        }
        if let error {
            context.fireErrorCaught(error)
        }
        context.fireChannelReadComplete()
        releaseHeldRead(context: context)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// Takes NIO's HTTP decoder and encoder out: a stream writes its own bytes, and keeps no
    /// parser or read buffer for a client that has nothing more to send.
    private func removeCodec(context: ChannelHandlerContext) {
        let pipeline = context.pipeline.syncOperations
        if let encoder = try? pipeline.context(handlerType: HTTPResponseEncoder.self) {
            pipeline.removeHandler(context: encoder, promise: nil)
        }
        if let decoder = try? pipeline.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self) {
            pipeline.removeHandler(context: decoder, promise: nil)
        }
    }

    private func releaseHeldRead(context: ChannelHandlerContext) {
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    private func decide(_ asyncChannel: HTTPAsyncChannel?) {
        guard !decided else { return }
        decided = true
        handedOver.succeed(asyncChannel)
    }

}

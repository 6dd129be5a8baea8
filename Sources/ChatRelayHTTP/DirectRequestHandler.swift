import ChatRelay
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// The first handler of every HTTP/1 connection, after NIO's HTTP codec: it serves the node's two
/// busy requests itself, below Hummingbird, and hands the connection to Hummingbird at the first
/// request of any other kind.
///
/// - A stream asked for by the connection's first request (`RelayNode.directStreamRequest`):
///   reads are held while the node opens it (latest id, hub registration, replay). Then the HTTP
///   codec leaves the pipeline, this handler writes the head and the opening, and the hub's
///   fan-out writes live events from this handler's context (`ChannelStreamOutput`). The
///   connection keeps no task, async channel or parser: only the socket, this handler and the
///   subscription.
/// - A message POST (`RelayNode.directPublishRequest`), any number of them on a kept-alive
///   connection: the body is read, the node publishes it, and the answer is written through NIO's
///   encoder, with the headers the router's answers carry. Requests pipelined behind it wait.
/// - Anything else, or a stream the node could not open (the router then answers with the error):
///   Hummingbird's handlers and async channel are added behind this one, the request parts read
///   so far are passed on, and this handler leaves the pipeline.
/// - On a connection past the node's open-connection limit (`refusal`), the first request,
///   whatever it is, gets that `503` and the connection closes.
///
/// Why below Hummingbird: a request that goes through its async channel, router and middleware
/// costs several times the CPU of the work itself, and after an idle moment (a chat at a few
/// messages a second is idle most of the time) that code runs from cold caches: about 0.15 ms more
/// per message on the machine the benchmarks ran on.
///
/// Every method runs on the channel's event loop.
final class DirectRequestHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    enum State {
        /// Between requests; `first` until the connection's first request arrived.
        case awaitingHead(first: Bool)
        /// A stream is being opened; the request parts read since are kept in case it is handed over.
        case opening(readSince: [HTTPServerRequestPart])
        /// The stream is live; whatever the client sends now is ignored.
        case streaming
        /// A message POST's body is arriving.
        case receivingPublish(DirectPublishRequest, body: ByteBuffer)
        /// A message is being published; requests pipelined behind it are kept until it is answered.
        case publishing(DirectPublishRequest, readSince: [HTTPServerRequestPart])
        /// Hummingbird serves the connection.
        case handedOver
        case closed
    }

    let node: RelayNode
    let logger: Logger
    /// Completed once: with Hummingbird's async channel, or nil.
    private let handedOver: EventLoopPromise<HTTPAsyncChannel?>
    private var decided = false
    var state = State.awaitingHead(first: true)
    /// A read asked for while a request was being served, to pass on once it is answered.
    private var readHeld = false
    /// The stream's output, once one is being opened.
    var output: ChannelStreamOutput?
    /// The server is stopping: close once the request being served is answered.
    var closeWhenAnswered = false
    /// Runs the node's async work for this connection on the connection's own event loop.
    let executor: EventLoopTaskExecutor
    /// The answer to the connection's first request, whatever it is, before the connection
    /// closes: the node is over its open-connection limit.
    private let refusal: APIError?

    /// - Parameters:
    ///   - eventLoop: the connection's.
    ///   - refusal: refuse the connection with this answer instead of serving it.
    init(
        node: RelayNode, eventLoop: any EventLoop, handedOver: EventLoopPromise<HTTPAsyncChannel?>, refusal: APIError? = nil,
        logger: Logger
    ) {
        self.node = node
        self.executor = EventLoopTaskExecutor(eventLoop: eventLoop)
        self.handedOver = handedOver
        self.refusal = refusal
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        process([unwrapInboundIn(data)], context: context)
    }

    /// Takes request parts in order: serves them, keeps them while a request is being served, or
    /// hands them (and every later one) to Hummingbird.
    func process(_ parts: [HTTPServerRequestPart], context: ChannelHandlerContext) {
        var index = parts.startIndex
        while index < parts.endIndex {
            let part = parts[index]
            switch state {
            case .awaitingHead(let first):
                guard case .head(let head) = part else {
                    handOver(context: context, readSince: Array(parts[index...]))
                    return
                }
                if let refusal {
                    state = .closed
                    decide(nil)
                    let (responseHead, body) = node.errorResponse(refusal, origin: head.headers.first(name: "origin"), closing: true)
                    writeAnswer(responseHead, body, closing: true, context: context)
                    return
                }
                if first, let request = node.directStreamRequest(head) {
                    state = .opening(readSince: [part])
                    open(request, context: context)
                } else if let request = node.directPublishRequest(head, remoteAddress: context.channel.remoteAddress) {
                    state = .receivingPublish(request, body: context.channel.allocator.buffer(capacity: request.contentLength))
                } else {
                    handOver(context: context, readSince: Array(parts[index...]))
                    return
                }
            case .opening(var readSince):
                readSince.append(part)
                state = .opening(readSince: readSince)
            case .receivingPublish(let request, var body):
                switch part {
                case .body(let bytes):
                    state = .closed  // releases the state's reference, so appending does not copy
                    body.writeImmutableBuffer(bytes)
                    state = .receivingPublish(request, body: body)
                case .end:
                    state = .publishing(request, readSince: [])
                    publish(request, body: body, context: context)
                case .head:
                    // The decoder sends a body's end before the next head; never here.
                    state = .closed
                    context.close(promise: nil)
                    return
                }
            case .publishing(let request, var readSince):
                state = .closed
                readSince.append(part)
                state = .publishing(request, readSince: readSince)
            case .handedOver:
                context.fireChannelRead(wrapInboundOut(part))
            case .streaming, .closed:
                // Once a stream's codec has left these are raw bytes; its client has nothing to say.
                break
            }
            index += 1
        }
    }

    func read(context: ChannelHandlerContext) {
        switch state {
        case .opening, .publishing:
            readHeld = true
        case .awaitingHead, .streaming, .receivingPublish, .handedOver, .closed:
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        output?.writable = context.channel.isWritable
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        releaseOutput()
        if case .handedOver = state {} else { state = .closed }
        decide(nil)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        releaseOutput()
        decide(nil)
    }

    /// The socket is closed (or this handler left the pipeline): direct writes stop, and the
    /// output is let go. It holds this handler's context, which holds this handler: kept, the
    /// three would keep each other (and the channel, its pipeline and buffers) alive for ever
    /// after the connection closed, about 4 KiB per stream that ever ended.
    private func releaseOutput() {
        output?.socketClosed()
        output = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .awaitingHead:
            // A request NIO cannot parse: Hummingbird answers it, as on any connection.
            handOver(context: context, readSince: [], error: error)
        case .handedOver:
            context.fireErrorCaught(error)
        case .opening, .streaming, .receivingPublish, .publishing, .closed:
            logger.debug("connection failed", metadata: ["error": "\(error)"])
            state = .closed
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        let quiescing = event is ChannelShouldQuiesceEvent
        // The client closed its side: a stream's client is gone, and no request will follow.
        let inputClosed = (event as? ChannelEvent) == .inputClosed
        switch state {
        case .awaitingHead, .opening, .streaming, .receivingPublish, .closed:
            // The server is stopping (the drain ended the streams before), or the client left.
            if quiescing || inputClosed {
                state = .closed
                context.close(promise: nil)
                return
            }
        case .publishing:
            // The message may be stored already: answer it, then close.
            if quiescing || inputClosed {
                closeWhenAnswered = true
                return
            }
        case .handedOver:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Hands the connection to Hummingbird: its HTTP/1 handlers and async channel go behind this
    /// handler, which passes on what it read and leaves.
    func handOver(context: ChannelHandlerContext, readSince: [HTTPServerRequestPart], error: (any Error)? = nil) {
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

    /// Runs the node's async `work` as a task on the connection's event loop, then `then` with
    /// its result, back in this handler on that loop.
    func run<Value: Sendable>(
        _ work: @escaping @Sendable () async throws(APIError) -> Value,
        context: ChannelHandlerContext,
        then: @escaping (DirectRequestHandler, Result<Value, APIError>, ChannelHandlerContext) -> Void
    ) {
        let loop = context.eventLoop
        let handler = NIOLoopBound((self, context, then), eventLoop: loop)
        Task(executorPreference: executor) {
            let result: Result<Value, APIError>
            do throws(APIError) {
                result = .success(try await work())
            } catch {
                result = .failure(error)
            }
            // On the loop already (the task's executor); `execute` returns to the handler's isolation.
            loop.execute {
                let (handler, context, then) = handler.value
                then(handler, result, context)
            }
        }
    }

    /// Passes on a read asked for while a request was being served.
    func releaseHeldRead(context: ChannelHandlerContext) {
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    /// Tells `RelayHTTP1Channel` what became of the connection: Hummingbird's, or not (nil).
    func decide(_ asyncChannel: HTTPAsyncChannel?) {
        guard !decided else { return }
        decided = true
        handedOver.succeed(asyncChannel)
    }
}

import ChatRelay
import Logging
import NIOCore
import NIOHTTP1

/// Serves every request of one HTTP/1 connection, after NIO's HTTP codec: the one request path of
/// the node. Each request is routed once (`RelayRoute`), checked once, and answered through one
/// writer (`RelayNode.responseHead(for:origin:closing:)`), whatever it asks and wherever it comes
/// on its connection.
///
/// - A request's head is routed; its body is read (kept up to `--max-body-bytes` for a POST,
///   dropped for the others), then it is answered: at once (health, metrics, the page, errors) or
///   after the node's async work (a publish, history), which runs as a task on the connection's
///   event loop while reads are held and requests pipelined behind wait, in order.
/// - A stream (`RelayRequestHandler+Stream.swift`): once the node has opened it (hub registration,
///   replay), the HTTP codec and the request timeouts leave the pipeline, this handler writes the
///   head and the opening, and the hub's fan-out writes live events from this handler's context
///   (`ChannelStreamOutput`). The connection keeps no task, parser or buffer: only the socket,
///   this handler and the subscription, wherever the stream came on the connection.
/// - On a connection past the node's open-connection limit (`refusal`), the first request,
///   whatever it is, gets that `503` and the connection closes.
///
/// Why not a web framework's router: a request through an async channel, a router and middleware
/// costs several times the CPU of the work itself, and after an idle moment that code runs from
/// cold caches; and a framework keeps a task and an async channel per connection for as long as
/// it is open, several times what a stream needs (about 23 KiB against 4.5).
///
/// Every method runs on the channel's event loop.
final class RelayRequestHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// A request whose head was read.
    struct Request {
        let head: HTTPRequestHead
        let target: RequestTarget
        /// What it asks for, or the error to answer (the route's, or a POST's checks').
        var route: Result<RelayRoute, APIError>
        /// A POST that passed the checks made before its body.
        var admitted: AdmittedPublish?
        /// The `Origin` header, for CORS.
        let origin: String?
        /// The connection may serve another request after this one's answer.
        let keepAlive: Bool
        /// `HEAD`: the answer's head only.
        let headOnly: Bool
    }

    enum State {
        case awaitingHead
        /// A request's body is arriving: kept (`body`) for a route that takes one, else dropped.
        case receiving(Request, body: ByteBuffer?)
        /// A request is being answered after async work; the request parts read since are kept,
        /// in order, for when it is answered.
        case answering(readSince: [HTTPServerRequestPart])
        /// The connection carries a stream; whatever the client sends now is ignored.
        case streaming
        case closed
    }

    let node: RelayNode
    let logger: Logger
    var state = State.awaitingHead
    /// A read asked for while a request was being answered, to pass on once it is.
    private var readHeld = false
    /// The stream's output, once one is being opened.
    var output: ChannelStreamOutput?
    /// The end of a stream opened with a token, at its expiry (`--auth jwt`).
    var expiry: NIOScheduledCallback?
    /// The server is stopping, or the client closed its side: close once the request being
    /// answered is.
    var closeWhenAnswered = false
    /// Runs the node's async work for this connection on the connection's own event loop.
    let executor: EventLoopTaskExecutor
    /// The answer to the connection's first request, whatever it is, before the connection
    /// closes: the node is over its open-connection limit.
    private let refusal: APIError?

    /// - Parameters:
    ///   - eventLoop: the connection's.
    ///   - refusal: refuse the connection with this answer instead of serving it.
    init(node: RelayNode, eventLoop: any EventLoop, refusal: APIError? = nil, logger: Logger) {
        self.node = node
        self.executor = EventLoopTaskExecutor(eventLoop: eventLoop)
        self.refusal = refusal
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .streaming, .closed:
            // Once a stream's codec has left, what its client sends stops at `StreamInboundGuard`;
            // whatever else comes now (request parts read before a close) has nothing to answer.
            // Never unwrapped here: after the codec left, it would not be a request part.
            return
        case .awaitingHead, .receiving, .answering:
            process(CollectionOfOne(unwrapInboundIn(data)), context: context)
        }
    }

    /// Takes request parts in order: reads a request, answers it, or keeps what comes while one is
    /// being answered.
    func process(_ parts: some Collection<HTTPServerRequestPart>, context: ChannelHandlerContext) {
        for part in parts {
            switch state {
            case .awaitingHead:
                // A body's parts after an answer that did not wait for them (there is none such
                // now: a request is answered after its end) would be dropped here.
                guard case .head(let head) = part else { continue }
                if let refusal {
                    let request = Request(head, keepAlive: false)
                    answer(Answer(refusal), to: request, context: context)
                    return
                }
                received(Request(head), context: context)
            case .receiving(let request, var body):
                switch part {
                case .body(let bytes):
                    guard var kept = body else { continue }
                    body = nil
                    state = .closed  // releases the state's reference, so appending does not copy
                    guard kept.readableBytes + bytes.readableBytes <= node.configuration.maxBodyBytes else {
                        answer(Answer(.tooLarge(limit: node.configuration.maxBodyBytes)), to: request, closing: true, context: context)
                        return
                    }
                    kept.writeImmutableBuffer(bytes)
                    state = .receiving(request, body: kept)
                case .end:
                    dispatch(request, body: body, context: context)
                case .head:
                    // The decoder ends a body before the next head; never here.
                    close(context: context)
                    return
                }
            case .answering(var readSince):
                state = .closed
                readSince.append(part)
                state = .answering(readSince: readSince)
            case .streaming, .closed:
                // Request parts after an answer that closes the connection, or read before a
                // stream opened: nothing is answered after either.
                return
            }
        }
    }

    /// A request's head: a POST's checks before its body (rate limit, declared size, media type,
    /// `Idempotency-Key`), and what its body needs before it arrives.
    private func received(_ request: Request, context: ChannelHandlerContext) {
        guard case .success(let route) = request.route, let room = route.postsTo else {
            state = .receiving(request, body: nil)
            return
        }
        var request = request
        let limit = node.configuration.maxBodyBytes
        let length = request.head.headers.first(name: "content-length").flatMap(Int.init)
        do throws(APIError) {
            request.admitted = try node.checkPublish(
                publishRequest(
                    room: room, head: request.head, remoteAddress: context.channel.remoteAddress, typing: route.postsTypingSignal))
        } catch {
            guard let length, length <= limit else {
                // Not worth reading: answered now, and the connection closed under the rest.
                answer(Answer(error), to: request, closing: true, context: context)
                return
            }
            // A small body is read and dropped, and the error answered after it: the connection
            // can serve the next request.
            request.route = .failure(error)
            state = .receiving(request, body: nil)
            return
        }
        if request.head.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" }) {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
        }
        state = .receiving(request, body: context.channel.allocator.buffer(capacity: min(length ?? 1024, limit)))
    }

    /// Writes `answer` to `request` and goes on with what was pipelined behind it, or closes the
    /// connection after it (`closing`, or when the request or the server asked).
    func answer(_ answer: Answer, to request: Request, closing: Bool = false, context: ChannelHandlerContext) {
        let readSince: [HTTPServerRequestPart]
        if case .answering(let parts) = state { readSince = parts } else { readSince = [] }
        let closing = closing || !request.keepAlive || closeWhenAnswered
        write(
            answer, head: node.responseHead(for: answer, origin: request.origin, closing: closing), headOnly: request.headOnly,
            closing: closing, context: context)
        if closing {
            state = .closed
            return
        }
        state = .awaitingHead
        process(readSince, context: context)
        switch state {
        case .answering, .streaming, .closed:
            break  // the next request is being answered (reads stay held), or there is none to come
        case .awaitingHead, .receiving:
            releaseHeldRead(context: context)
        }
    }

    func read(context: ChannelHandlerContext) {
        if case .answering = state {
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
        releaseOutput()
        state = .closed
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        releaseOutput()
    }

    /// The socket is closed (or this handler left the pipeline): direct writes stop, the token's
    /// expiry is cancelled, and the output is let go. It holds this handler's context, which holds this handler: kept, the
    /// three would keep each other (and the channel, its pipeline and buffers) alive for ever
    /// after the connection closed, about 4 KiB per stream that ever ended.
    private func releaseOutput() {
        output?.socketClosed()
        output = nil
        // Its handler holds the subscription: cancelled, it lets go at once, not at the expiry.
        expiry?.cancel()
        expiry = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .awaitingHead, .receiving:
            // A request NIO's parser cannot read: answered, and the connection closed (nothing
            // after it on the connection can be trusted to start where a request starts).
            logger.debug("cannot read a request", metadata: ["error": "\(error)"])
            let request = Request(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/"), keepAlive: false)
            answer(Answer(.badRequest), to: request, closing: true, context: context)
        case .answering, .streaming, .closed:
            logger.debug("connection failed", metadata: ["error": "\(error)"])
            close(context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The server is stopping (the drain ended the streams before), or the client closed its
        // side: no request will follow, and a stream's client is gone.
        if event is ChannelShouldQuiesceEvent || (event as? ChannelEvent) == .inputClosed {
            switch state {
            case .awaitingHead, .streaming, .closed:
                close(context: context)
            case .receiving, .answering:
                // A POST may be stored already: answer it, then close.
                closeWhenAnswered = true
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func close(context: ChannelHandlerContext) {
        state = .closed
        context.close(promise: nil)
    }

    /// Runs the node's async `work` as a task on the connection's event loop, then `then` with
    /// its result, back in this handler on that loop.
    func run<Value: Sendable>(
        _ work: @escaping @Sendable () async throws(APIError) -> Value,
        context: ChannelHandlerContext,
        then: @escaping (RelayRequestHandler, Result<Value, APIError>, ChannelHandlerContext) -> Void
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

    /// Passes on a read asked for while a request was being answered.
    func releaseHeldRead(context: ChannelHandlerContext) {
        if readHeld {
            readHeld = false
            context.read()
        }
    }
}

extension RelayRequestHandler.Request {
    /// The request `head` asks for, routed.
    init(_ head: HTTPRequestHead, keepAlive: Bool? = nil) {
        let target = RequestTarget(head.uri)
        self.head = head
        self.target = target
        self.route = RelayRoute.match(method: head.method, path: target.path)
        self.admitted = nil
        self.origin = head.headers.first(name: "origin")
        self.keepAlive = keepAlive ?? head.isKeepAlive
        self.headOnly = head.method == .HEAD
    }
}

extension ChannelOutboundHandler where OutboundOut == HTTPServerResponsePart {
    /// Writes `answer` after its `head` and flushes; when `closing`, closes the connection once it
    /// is sent. `headOnly` (a `HEAD`) leaves the body out.
    func write(_ answer: Answer, head: HTTPResponseHead, headOnly: Bool = false, closing: Bool, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !headOnly, answer.body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(answer.body))), promise: nil)
        }
        guard closing else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

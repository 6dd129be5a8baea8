import ChatRelay
import NIOCore
import NIOHTTP1

/// Bounds how long a connection may hold the node without making progress: a request's head and
/// body must arrive within `requestTimeout` of its first byte (a new connection's first request,
/// of the connection's opening), and a kept-alive connection may wait `idleTimeout` for its next
/// request after an answer. Past either it is closed: with `408` and a JSON error when a request
/// was under way and not answered, silently when nothing was sent (as a browser's preconnected or
/// kept-alive socket expects).
///
/// Nothing is timed while the node is answering: a POST waiting for the broker has the broker's
/// own timeout, and a stream is answered for as long as it lasts (its `RelayRequestHandler`
/// removes this handler with the HTTP codec when the stream opens).
///
/// It sits right after NIO's HTTP decoder and encoder, where it sees the request parts and the
/// answers, and `InboundBytes` sits before the decoder to tell it that bytes of a request arrived
/// before its head is complete (a half-sent head produces no request part).
///
/// One timer at a time per connection, never moved earlier: a deadline is always at least the
/// shorter timeout away when it is set, and the timer is armed at most that far ahead, so when it
/// fires it either finds the deadline due or re-arms for it. Answering a request costs no timer
/// operation (cancelling one is a scan of the event loop's timers).
///
/// Every method runs on the channel's event loop.
final class RequestTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Why a connection was closed.
    enum Expiry: Equatable {
        /// A request did not arrive in full within the request timeout.
        case request
        /// No request came within the idle timeout (or, on a new connection, the request timeout).
        case idle
    }

    private let requestTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let node: RelayNode

    /// When the request being received began: its first byte, or the connection's opening for
    /// the first request. Nil between requests.
    private var receivingSince: NIODeadline?
    /// Bytes of the request being received arrived (else, on a new connection, nothing was sent).
    private var receivedBytes = false
    /// The request being received was answered already (a POST refused before its body).
    private var answeredEarly = false
    /// Requests received in full and not answered yet.
    private var awaitingAnswers = 0
    /// An answer's head was written and its end not yet.
    private var answering = false
    /// When the connection last had nothing to do.
    private var idleSince = NIODeadline.now()
    private var timer: Scheduled<Void>?
    /// The connection timed out and is closing: nothing more to time.
    private var expired = false
    private var context: ChannelHandlerContext?

    init(node: RelayNode) {
        self.node = node
        self.requestTimeout = TimeAmount(node.configuration.requestTimeout)
        self.idleTimeout = TimeAmount(node.configuration.idleTimeout)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        receivingSince = .now()
        armIfNeeded()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    /// Called by `InboundBytes`, before the decoder sees them.
    func bytesArrived() {
        if receivingSince == nil { receivingSince = .now() }
        receivedBytes = true
        armIfNeeded()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            if receivingSince == nil { receivingSince = .now() }
            receivedBytes = true
        case .body:
            break
        case .end:
            receivingSince = nil
            receivedBytes = false
            if answeredEarly {
                answeredEarly = false
            } else {
                awaitingAnswers += 1
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head:
            answering = true
        case .body:
            break
        case .end:
            answering = false
            if awaitingAnswers > 0 {
                awaitingAnswers -= 1
            } else if receivingSince != nil {
                answeredEarly = true
            }
            if awaitingAnswers == 0 {
                idleSince = .now()
                armIfNeeded()
            }
        }
        context.write(data, promise: promise)
    }

    /// What the connection waits for now, and until when; nil while the node is answering.
    private var deadline: (NIODeadline, Expiry)? {
        if let receivingSince {
            return (receivingSince + requestTimeout, receivedBytes ? .request : .idle)
        }
        if awaitingAnswers > 0 || answering { return nil }
        return (idleSince + idleTimeout, .idle)
    }

    private func armIfNeeded() {
        guard timer == nil, !expired, let context, let (due, _) = deadline else { return }
        // Never further ahead than the shorter timeout: no later deadline can come before it.
        let at = min(due, .now() + min(requestTimeout, idleTimeout))
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: at) { [self] in
            timer = nil
            expireIfDue()
        }
    }

    private func expireIfDue() {
        guard !expired, let context, let (due, expiry) = deadline else { return }
        guard due <= .now() else {
            armIfNeeded()
            return
        }
        expired = true
        switch expiry {
        case .idle:
            node.metrics.idleTimeouts.increment()
        case .request:
            node.metrics.requestTimeouts.increment()
        }
        // A request under way that nothing answered yet gets 408; anything else just closes.
        guard expiry == .request, !answering, !answeredEarly, awaitingAnswers == 0 else {
            context.close(promise: nil)
            return
        }
        let seconds = node.configuration.requestTimeout.components.seconds
        let error = APIError(
            .requestTimeout, code: "request_timeout",
            message: "The request did not arrive in full within \(seconds) s; the connection is closed.")
        let answer = Answer(error)
        answering = true
        write(answer, head: node.responseHead(for: answer, origin: nil, closing: true), closing: true, context: context)
    }

    /// Tells a `RequestTimeoutHandler` that bytes arrived: goes before the HTTP decoder.
    final class InboundBytes: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer

        private let timeouts: RequestTimeoutHandler

        init(_ timeouts: RequestTimeoutHandler) {
            self.timeouts = timeouts
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            timeouts.bytesArrived()
            context.fireChannelRead(data)
        }
    }
}

import NIOCore
import NIOHTTP1

/// One keep-alive publishing connection: one POST at a time, the answer reported to the scheduler.
///
/// Lives on the scheduler's event loop, like the scheduler itself.
final class PublisherHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let target: BenchTarget
    /// The publish path of each room: message `n` goes to `paths[n % paths.count]`.
    private let paths: [String]
    private let size: Int
    // Strong: the scheduler lives as long as its connections, which close when the run ends.
    private let scheduler: PublishScheduler
    private var context: ChannelHandlerContext?
    /// The message in flight: its sequence number and when it was written.
    private var inFlight: (sequence: Int, sent: UInt64)?
    private var status: HTTPResponseStatus?

    init(target: BenchTarget, paths: [String], size: Int, scheduler: PublishScheduler) {
        self.target = target
        self.paths = paths
        self.size = size
        self.scheduler = scheduler
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// Writes message `sequence` now; the body carries the time it was written.
    func send(_ sequence: Int) {
        guard let context, inFlight == nil else { preconditionFailure("publisher busy") }
        let sent = NIODeadline.now().uptimeNanoseconds
        var body = context.channel.allocator.buffer(capacity: size + 64)
        body.writeString(BenchPayload.body(sequence: sequence, sentNanoseconds: sent, size: size))
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: target.hostHeader)
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        inFlight = (sequence, sent)
        context.write(
            wrapOutboundOut(.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: paths[sequence % paths.count], headers: headers))),
            promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body:
            break
        case .end:
            guard let message = inFlight else { return }
            inFlight = nil
            let code = status?.code ?? 0
            status = nil
            scheduler.answered(message.sequence, sent: message.sent, status: Int(code), by: self)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.context = nil
        let lost = inFlight
        inFlight = nil
        scheduler.connectionLost(self, inFlight: lost?.sequence)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

import NIOCore
import NIOHTTP1

/// One SSE subscriber: sends its GET, checks the answer is a 200 stream, then records every
/// benchmark message it receives in its ledger and its loop's histograms.
///
/// Runs entirely on its channel's event loop, like the `LoopStats` it writes to.
final class SubscriberHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let head: HTTPRequestHead
    private let stats: LoopStats
    /// Succeeded once the stream answered 200; failed if it did not.
    private let opened: EventLoopPromise<Void>
    private var scanner = SSEDataScanner()
    private(set) var ledger: DeliveryLedger
    private var state = State.connecting

    private enum State { case connecting, streaming, closed }

    init(target: BenchTarget, path: String, messages: Int, room: Int, rooms: Int, stats: LoopStats, opened: EventLoopPromise<Void>) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: target.hostHeader)
        headers.add(name: "Accept", value: "text/event-stream")
        headers.add(name: "Cache-Control", value: "no-cache")
        self.head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
        self.stats = stats
        self.opened = opened
        self.ledger = DeliveryLedger(messages: messages, room: room, rooms: rooms)
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let response):
            guard state == .connecting else { return }
            if response.status == .ok {
                state = .streaming
                stats.connected += 1
                stats.ledgers.append(self)
                opened.succeed(())
            } else {
                fail(context: context, reason: "HTTP \(response.status.code)")
            }
        case .body(let buffer):
            guard state == .streaming else { return }
            let now = NIODeadline.now().uptimeNanoseconds
            let stats = self.stats
            scanner.scan(buffer) { sequence, sent in
                guard ledger.record(sequence) else { return }
                stats.delivered += 1
                stats.lastDelivery = now
                if now > sent { _ = stats.fromSend.record(now - sent) } else { _ = stats.fromSend.record(0) }
                let due = stats.due(sequence)
                _ = stats.fromSchedule.record(now > due ? now - due : 0)
            }
        case .end:
            close(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch state {
        case .connecting:
            state = .closed
            stats.failures["closed before answering", default: 0] += 1
            opened.fail(BenchError.streamRefused("closed before answering"))
        case .streaming:
            state = .closed
            stats.connected -= 1
            stats.disconnected += 1
        case .closed:
            break
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if state == .connecting {
            fail(context: context, reason: "\(error)")
        } else {
            context.close(promise: nil)
        }
    }

    private func fail(context: ChannelHandlerContext, reason: String) {
        guard state == .connecting else { return }
        state = .closed
        stats.failures[reason, default: 0] += 1
        opened.fail(BenchError.streamRefused(reason))
        context.close(promise: nil)
    }

    private func close(context: ChannelHandlerContext) {
        context.close(promise: nil)
    }
}

/// Why a benchmark could not run as asked.
public enum BenchError: Error, CustomStringConvertible {
    case streamRefused(String)
    case invalidConfiguration(String)
    case connectFailed(String)

    public var description: String {
        switch self {
        case .streamRefused(let reason): "a stream was refused: \(reason)"
        case .invalidConfiguration(let reason): reason
        case .connectFailed(let reason): "cannot connect: \(reason)"
        }
    }
}

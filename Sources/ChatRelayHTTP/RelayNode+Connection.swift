import ChatRelay
import NIOCore
import NIOHTTP1

extension RelayNode {
    /// Sets up a new connection: counts it against `--max-open-connections` (`ConnectionLimiter`),
    /// then NIO's HTTP/1 codec, the request timeouts (`RequestTimeoutHandler`) and the node's
    /// `RelayRequestHandler`, which serves every request on it.
    func configureConnection(_ channel: any Channel) -> EventLoopFuture<Void> {
        let admission = connections.admit()
        metrics.openConnections.increment()
        channel.closeFuture.whenComplete { [self] _ in
            connections.release()
            metrics.openConnections.decrement()
        }
        if admission != .served { metrics.openConnectionsLimited.increment() }
        guard admission != .dropped else {
            channel.close(promise: nil)
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        return channel.eventLoop.makeCompletedFuture {
            let pipeline = channel.pipeline.syncOperations
            try pipeline.configureHTTPServerPipeline(
                withPipeliningAssistance: false,
                withErrorHandling: false,
                withOutboundHeaderValidation: false,
                withEncoderConfiguration: .init(),
                withDecoderLimitConfiguration: Self.decoderLimits
            )
            let timeouts = RequestTimeoutHandler(node: self)
            try pipeline.addHandler(RequestTimeoutHandler.InboundBytes(timeouts), position: .first)
            try pipeline.addHandler(timeouts)
            let refusal =
                admission == .refused
                ? APIError.unavailable(
                    "This node is at its limit of \(connections.limit) open connections; retry shortly or use another node.",
                    retryAfter: 2)
                : nil
            try pipeline.addHandler(RelayRequestHandler(node: self, eventLoop: channel.eventLoop, refusal: refusal, logger: logger))
        }
    }

    /// A request head's bounds: a field of 8 KiB, 32 KiB of fields, 100 fields.
    private static let decoderLimits: NIOHTTPDecoderLimitConfiguration = {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = 8 * 1024
        limits.maxHeaderListSize = 32 * 1024
        limits.maxHeaderFieldCount = 100
        return limits
    }()
}

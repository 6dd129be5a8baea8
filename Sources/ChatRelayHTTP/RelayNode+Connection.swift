import ChatRelay
import NIOCore
import NIOHTTP1

extension RelayNode {
    /// Sets up a new connection: counts it against `--max-open-connections` (`ConnectionLimiter`),
    /// then NIO's HTTP/1 codec, the request timeouts (`RequestTimeoutHandler`) and the node's
    /// `RelayRequestHandler`, which serves every request on it.
    func configureConnection(_ channel: any Channel) -> EventLoopFuture<Void> {
        // Counted by the peer's own address: a trusted proxy's connections carry many clients.
        let peer = channel.remoteAddress
        let address = configuration.trustedProxies.isTrusted(peer: peer) ? nil : peer?.ipAddress
        let admission = connections.admit(address: address)
        metrics.openConnections.increment()
        channel.closeFuture.whenComplete { [self] _ in
            connections.release(address: address)
            metrics.openConnections.decrement()
        }
        switch admission {
        case .served: break
        case .refusedForClient, .droppedForClient: metrics.refusedForClient[.connections]?.increment()
        case .refused, .dropped: metrics.openConnectionsLimited.increment()
        }
        guard !admission.isDropped else {
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
            let refusal: APIError? =
                switch admission {
                case .refused:
                    APIError.unavailable(
                        "This node is at its limit of \(connections.limit) open connections; retry shortly or use another node.",
                        retryAfter: 2)
                case .refusedForClient:
                    APIError.clientLimit(
                        "too_many_connections",
                        "This address has \(connections.perClient) connections open to this node, its limit; close some first.")
                case .served, .dropped, .droppedForClient: nil
                }
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

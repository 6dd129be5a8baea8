import ChatRelay
import Foundation
import Metrics
import NIOCore
import NIOHTTP1
import RelayAccess

extension RelayRequestHandler {
    /// Opens a stream on this connection once the node has its opening (hub registration and
    /// replay); reads are held meanwhile. Wherever the stream comes on the connection, the
    /// answers before it were written in full: the codec can leave.
    func openStream(rooms: [RoomName], request: Request, credentials: Credentials?, client: String, context: ChannelHandlerContext) {
        let lastEventID: String?
        let presence = StreamPresence(target: request.target)
        do throws(APIError) {
            // A stream's chunks are HTTP/1.1's, and its end closes the connection.
            guard request.head.version == .http1_1 else {
                throw APIError(.httpVersionNotSupported, code: "http_version_not_supported", message: "A stream needs HTTP/1.1.")
            }
            lastEventID = RelayNode.lastEventID(
                header: request.head.headers.first(name: "last-event-id"), query: request.target.value(of: "lastEventId"))
        } catch {
            answer(Answer(error), to: request, context: context)
            return
        }
        let output = ChannelStreamOutput(context: context, deferredWrites: node.metrics.streamWritesDeferred)
        self.output = output
        state = .answering(readSince: [])
        run(
            { [node] () async throws(APIError) in
                try await node.openStream(
                    rooms: rooms, lastEventID: lastEventID, presence: presence, credentials: credentials, client: client,
                    output: output)
            }, context: context,
            then: { handler, result, context in
                handler.opened(result, request: request, context: context)
            })
    }

    private func opened(_ result: Result<RelayNode.StreamOpening, APIError>, request: Request, context: ChannelHandlerContext) {
        guard case .answering = state else {
            // Closed meanwhile: the close already ended the subscription, if there was one.
            return
        }
        switch result {
        case .failure(let error):
            // Draining, at the stream limit, the broker unreachable.
            output = nil
            answer(Answer(error), to: request, context: context)
        case .success(let opening):
            state = .streaming
            removeCodec(context: context)
            output?.beginDirectWrites()
            var head = node.streamHead(origin: request.origin)
            // The opening as one chunk after the head, in one buffer (one send): its header, the
            // bytes as they are, then CR LF.
            head.writeString(String(opening.firstBytes.readableBytes, radix: 16))
            head.writeStaticString("\r\n")
            head.writeImmutableBuffer(opening.firstBytes)
            head.writeStaticString("\r\n")
            output?.write(head)
            output?.flush()
            // Runs after this, on this loop.
            opening.goLive(hub: node.hub)
            if let identity = opening.identity {
                endWhenExpired(opening.subscription, identity: identity, context: context)
            }
            releaseHeldRead(context: context)
        }
    }

    /// Ends the stream when its token expires, with `event: token-expired`. Streams whose tokens
    /// share an `exp` (issued together) end spread over the last 5 % of their lifetime, at most 10 s
    /// before it, so their clients do not all come back in the same instant. A scheduled callback
    /// (no promise, no future), cancelled when the connection closes: about 0.1 KiB a stream.
    private func endWhenExpired(_ subscription: Subscription, identity: Identity, context: ChannelHandlerContext) {
        let remaining = identity.expiresAt - Date().timeIntervalSince1970
        let spread = min(10, max(0, remaining) * 0.05)
        let delay = max(0, remaining - Double.random(in: 0...spread))
        // A token valid for more than a year: no stream lives that long (a node restarts sooner),
        // and a timer that far ahead does not fit NIO's nanoseconds.
        guard delay < Self.longestExpiryTimer else { return }
        expiry = try? context.eventLoop.scheduleCallback(
            in: .milliseconds(Int64(clamping: delay * 1000)),
            handler: TokenExpiry(subscription: subscription, expired: node.accessMetrics.streamsExpired))
    }

    /// The longest a stream's end is scheduled ahead, in seconds: a year.
    static let longestExpiryTimer = 366.0 * 86_400

    /// Takes NIO's HTTP decoder and encoder out, and the request timeouts with them: a stream
    /// writes its own bytes (no handler between this one and the socket may expect HTTP parts),
    /// and keeps no parser, read buffer or timer for a client that has nothing more to send.
    private func removeCodec(context: ChannelHandlerContext) {
        // NIO pools up to `maxMessagesPerRead` receive buffers per connection (a second one is
        // made when a request head came in two reads, as it often does through a proxy); a
        // stream reads nothing more, so one is enough.
        try? context.channel.syncOptions?.setOption(.maxMessagesPerRead, value: 1)
        let pipeline = context.pipeline.syncOperations
        // In the decoder's place before it leaves: the bytes it still holds (a request pipelined
        // behind this one) and every later read stop there, never reaching this handler.
        try? pipeline.addHandler(StreamInboundGuard(), position: .before(self))
        if let timeouts = try? pipeline.context(handlerType: RequestTimeoutHandler.self) {
            pipeline.removeHandler(context: timeouts, promise: nil)
        }
        if let bytes = try? pipeline.context(handlerType: RequestTimeoutHandler.InboundBytes.self) {
            pipeline.removeHandler(context: bytes, promise: nil)
        }
        if let encoder = try? pipeline.context(handlerType: HTTPResponseEncoder.self) {
            pipeline.removeHandler(context: encoder, promise: nil)
        }
        if let decoder = try? pipeline.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self) {
            pipeline.removeHandler(context: decoder, promise: nil)
        }
    }
}

/// Ends a stream whose token expired.
struct TokenExpiry: NIOScheduledCallbackHandler, Sendable {
    let subscription: Subscription
    let expired: Counter

    func handleScheduledCallback(eventLoop: some EventLoop) {
        expired.increment()
        subscription.close(.tokenExpired)
    }
}

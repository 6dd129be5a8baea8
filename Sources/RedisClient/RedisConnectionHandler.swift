import NIOCore

/// One Redis connection's protocol, on its channel's event loop: commands out in RESP, replies in
/// through hiredis' reader, each handed to the request that waits for it, in order.
///
/// Requests are written as they come and flushed once per turn of the event loop, so every
/// request made in one turn (the POSTs a loop read together, say) shares one write and one round
/// trip. A reply no request waits for (pub/sub messages and confirmations) goes to `onPush`.
///
/// Every method runs on the channel's event loop.
final class RedisConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A request on the wire: how many replies it waits for, those that came, and who waits.
    private struct Pending {
        var expected: Int
        var replies: [RedisReply]
        let promise: EventLoopPromise<[RedisReply]>
        let sentAt: NIODeadline
    }

    private let reader = RedisReplyReader()
    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var context: ChannelHandlerContext?
    private var flushScheduled = false
    private var requestsSinceFlush = 0
    private var commandsSinceFlush = 0
    /// Why the connection failed, once it did: what requests still waiting fail with.
    private(set) var failure: RedisError?

    /// Replies no request waits for.
    var onPush: ((RedisReply) -> Void)?
    /// After each flush: how many requests (and commands) it carried.
    var onRoundTrip: ((_ requests: Int, _ commands: Int) -> Void)?

    /// When the oldest request still waiting for its replies was sent.
    var oldestPendingSince: NIODeadline? { pending.first?.sentAt }

    /// Requests waiting for replies.
    var pendingCount: Int { pending.count }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(failure ?? .connectionLost("the connection was closed"))
        self.context = nil
    }

    /// Sends `commands` as one request; `promise` gets their replies, in order (error replies
    /// as `.error`), or fails if the connection breaks first.
    func send(_ commands: [RedisCommand], promise: EventLoopPromise<[RedisReply]>) {
        guard let context, failure == nil else {
            promise.fail(failure ?? .connectionLost("the connection is closed"))
            return
        }
        write(commands, context: context)
        pending.append(Pending(expected: commands.count, replies: [], promise: promise, sentAt: .now()))
        requestsSinceFlush += 1
        commandsSinceFlush += commands.count
    }

    /// Sends commands whose replies come back through `onPush` (SUBSCRIBE, PING while subscribed).
    func sendWithoutReply(_ commands: [RedisCommand]) {
        guard let context, failure == nil else { return }
        write(commands, context: context)
    }

    /// Closes the connection; requests still waiting fail with `error`.
    func close(_ error: RedisError) {
        if failure == nil { failure = error }
        failAll(error)
        context?.close(promise: nil)
    }

    private func write(_ commands: [RedisCommand], context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: commands.reduce(0) { $0 + $1.encodedSizeEstimate })
        for command in commands {
            buffer.writeRedisCommand(command)
        }
        context.write(wrapOutboundOut(buffer), promise: nil)
        guard !flushScheduled else { return }
        // After what else this turn of the loop writes: one flush for all of it.
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            guard let context = self.context else { return }
            context.flush()
            if requestsSinceFlush > 0 {
                onRoundTrip?(requestsSinceFlush, commandsSinceFlush)
                requestsSinceFlush = 0
                commandsSinceFlush = 0
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try reader.feed(unwrapInboundIn(data))
            while let reply = try reader.next() {
                guard !pending.isEmpty else {
                    onPush?(reply)
                    continue
                }
                pending[pending.startIndex].replies.append(reply)
                if pending[pending.startIndex].replies.count == pending[pending.startIndex].expected {
                    let done = pending.removeFirst()
                    done.promise.succeed(done.replies)
                }
            }
        } catch {
            close(error)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let error = failure ?? .connectionLost("the server closed the connection")
        failure = error
        failAll(error)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        close(.connectionLost("\(error)"))
    }

    private func failAll(_ error: RedisError) {
        while let request = pending.popFirst() {
            request.promise.fail(error)
        }
    }
}

import NIOCore
import NIOPosix

/// A connected Redis channel and its protocol handler, ready for commands: authenticated and on
/// the database its URL names.
///
/// Both live on one event loop; `handler` can only be reached there.
struct RedisConnection: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<RedisConnectionHandler>

    /// Connects to `url` from `eventLoop`, then sends `AUTH` and `SELECT` as the URL asks.
    /// Fails with `.connectionFailed` (refused, unreachable, timed out, wrong password).
    static func connect(to url: RedisURL, on eventLoop: any EventLoop, timeout: Duration) -> EventLoopFuture<RedisConnection> {
        let connected = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(timeout))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RedisConnectionHandler())
                }
            }
            .connect(host: url.host, port: url.port)
        return connected.flatMapError { error in
            eventLoop.makeFailedFuture(RedisError.connectionFailed("\(url.host):\(url.port): \(error)"))
        }.flatMap { channel in
            channel.eventLoop.makeCompletedFuture {
                let handler = try channel.pipeline.syncOperations.handler(type: RedisConnectionHandler.self)
                return RedisConnection(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
            }.flatMap { connection in
                connection.handshake(url, timeout: timeout)
            }.flatMapError { error in
                channel.close(promise: nil)
                return eventLoop.makeFailedFuture(error)
            }
        }
    }

    /// `connect(to:on:timeout:)`, with `done` called on `eventLoop` with the connection or why
    /// there is none.
    static func connect(
        to url: RedisURL, on eventLoop: any EventLoop, timeout: Duration,
        _ done: @escaping (Result<RedisConnection, RedisError>) -> Void
    ) {
        connect(to: url, on: eventLoop, timeout: timeout).assumeIsolated().whenComplete { result in
            done(result.mapError { $0 as? RedisError ?? .connectionFailed("\($0)") })
        }
    }

    /// `AUTH` and `SELECT`, if the URL asks for them, answered within `timeout`.
    private func handshake(_ url: RedisURL, timeout: Duration) -> EventLoopFuture<RedisConnection> {
        var setup: [RedisCommand] = []
        if let password = url.password {
            setup.append(url.user.map { ["AUTH", RedisArgument($0), RedisArgument(password)] } ?? ["AUTH", RedisArgument(password)])
        }
        if url.database != 0 { setup.append(["SELECT", RedisArgument(url.database)]) }
        guard !setup.isEmpty else { return channel.eventLoop.makeSucceededFuture(self) }
        let promise = channel.eventLoop.makePromise(of: [RedisReply].self)
        handler.value.send(setup, promise: promise)
        // A server that accepts connections but does not answer (frozen) must not keep the
        // connection attempt, and the requests waiting for it, forever.
        let handler = self.handler
        let deadline = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            handler.value.close(.connectionFailed("\(url): no answer to AUTH or SELECT within \(timeout)"))
        }
        promise.futureResult.whenComplete { _ in deadline.cancel() }
        let connection = self
        return promise.futureResult.flatMapThrowing { replies in
            for reply in replies {
                if case .error(let message) = reply { throw RedisError.connectionFailed("\(url): \(message)") }
            }
            return connection
        }.flatMapErrorThrowing { error in
            if let error = error as? RedisError, case .connectionFailed = error { throw error }
            throw RedisError.connectionFailed("\(url): \(error)")
        }
    }
}

import CHiredis

#if canImport(Glibc)
import Glibc
#endif

/// One synchronous hiredis connection.
///
/// Not thread-safe, and blocking: each connection is owned by one dedicated thread (see
/// `RedisClient` and `RedisSubscriber`), never used from a NIO event loop.
public final class RedisConnection {
    private let context: UnsafeMutablePointer<redisContext>
    public let url: RedisURL

    /// Connects, then authenticates and selects the database the URL names.
    /// - Parameters:
    ///   - connectTimeout: for the TCP connect.
    ///   - commandTimeout: for each read and write afterwards; nil waits forever.
    public init(url: RedisURL, connectTimeout: Duration, commandTimeout: Duration?) throws(RedisError) {
        self.url = url
        guard let context = redisConnectWithTimeout(url.host, Int32(url.port), Self.timeval(connectTimeout)) else {
            throw .connectionFailed("out of memory")
        }
        if context.pointee.err != 0 {
            let reason = Self.errorString(context)
            redisFree(context)
            throw .connectionFailed("\(url.host):\(url.port): \(reason)")
        }
        self.context = context
        if let commandTimeout {
            redisSetTimeout(context, Self.timeval(commandTimeout))
        }
        redisEnableKeepAlive(context)
        var setup: [RedisCommand] = []
        if let password = url.password {
            setup.append(url.user.map { ["AUTH", RedisArgument($0), RedisArgument(password)] } ?? ["AUTH", RedisArgument(password)])
        }
        if url.database != 0 { setup.append(["SELECT", RedisArgument(url.database)]) }
        if !setup.isEmpty {
            let replies: [RedisReply]
            do {
                replies = try pipeline(setup)
            } catch {
                throw .connectionFailed("\(url): \(error)")
            }
            for reply in replies {
                if case .error(let message) = reply { throw .connectionFailed("\(url): \(message)") }
            }
        }
    }

    deinit {
        redisFree(context)
    }

    /// The socket, for `poll(2)`.
    public var fileDescriptor: Int32 { context.pointee.fd }

    /// Sends every command, then reads every reply, in order: one round trip for the lot.
    /// Error replies come back as `.error`; only a broken connection throws.
    public func pipeline(_ commands: [RedisCommand]) throws(RedisError) -> [RedisReply] {
        for command in commands { try append(command) }
        var replies: [RedisReply] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer? = nil
            guard redisGetReply(context, &raw) == REDIS_OK, let raw else {
                throw .connectionLost(Self.errorString(context))
            }
            replies.append(Self.decode(raw))
        }
        return replies
    }

    /// One command, one round trip.
    public func command(_ command: RedisCommand) throws(RedisError) -> RedisReply {
        try pipeline([command])[0]
    }

    /// Queues a command in the output buffer without sending it.
    public func append(_ command: RedisCommand) throws(RedisError) {
        // One contiguous copy of all arguments, with a pointer and a length per argument.
        var lengths = command.map(\.bytes.count)
        var joined: [UInt8] = []
        joined.reserveCapacity(lengths.reduce(0, +) + 1)
        for argument in command { joined.append(contentsOf: argument.bytes) }
        if joined.isEmpty { joined.append(0) }
        let status = joined.withUnsafeBufferPointer { buffer -> Int32 in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            var pointers: [UnsafePointer<CChar>?] = []
            pointers.reserveCapacity(command.count)
            var offset = 0
            for length in lengths {
                pointers.append(base + offset)
                offset += length
            }
            return pointers.withUnsafeMutableBufferPointer { argv in
                lengths.withUnsafeMutableBufferPointer { argvlen in
                    redisAppendCommandArgv(context, Int32(command.count), argv.baseAddress, argvlen.baseAddress)
                }
            }
        }
        guard status == REDIS_OK else { throw .connectionLost(Self.errorString(context)) }
    }

    /// Writes the output buffer to the socket (blocking until it is all written).
    public func flush() throws(RedisError) {
        var done: Int32 = 0
        while done == 0 {
            guard redisBufferWrite(context, &done) == REDIS_OK else { throw .connectionLost(Self.errorString(context)) }
        }
    }

    /// Reads what the socket has into the reply reader (blocks if nothing is there: poll first).
    public func read() throws(RedisError) {
        guard redisBufferRead(context) == REDIS_OK else { throw .connectionLost(Self.errorString(context)) }
    }

    /// A complete reply already read from the socket, if there is one; never touches the socket.
    public func bufferedReply() throws(RedisError) -> RedisReply? {
        var raw: UnsafeMutableRawPointer? = nil
        guard redisGetReplyFromReader(context, &raw) == REDIS_OK else { throw .connectionLost(Self.errorString(context)) }
        return raw.map(Self.decode)
    }

    /// Converts hiredis' reply tree and frees it.
    private static func decode(_ raw: UnsafeMutableRawPointer) -> RedisReply {
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        return convert(reply)
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            return .bulk(value.len == 0 ? [] : Array(UnsafeRawBufferPointer(start: value.str, count: value.len)))
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: UnsafeRawBufferPointer(start: value.str, count: value.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: UnsafeRawBufferPointer(start: value.str, count: value.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(value.integer))
        case REDIS_REPLY_ARRAY:
            return .array((0..<value.elements).map { convert(value.element[$0]!) })
        default:
            return .null
        }
    }

    private static func errorString(_ context: UnsafeMutablePointer<redisContext>) -> String {
        let text = withUnsafeBytes(of: &context.pointee.errstr) { bytes in
            String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return text.isEmpty ? "error \(context.pointee.err)" : text
    }

    private static func timeval(_ duration: Duration) -> Glibc.timeval {
        let (seconds, attoseconds) = duration.components
        return Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}

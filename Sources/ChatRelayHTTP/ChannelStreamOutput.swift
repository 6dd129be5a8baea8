import ChatRelay
import Metrics
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
    import Glibc
#endif

/// A stream's connection as the hub's fan-out writes to it: below every HTTP handler.
///
/// Live events are already chunks (`StoredMessage.chunk`), framed once per event for every
/// subscriber, so they skip the HTTP layers. When the stream opens, the HTTP codec leaves the
/// pipeline (`RelayRequestHandler`), and once `beginDirectWrites()` ran, bytes go straight to the
/// socket with one `send(2)` (or `sendmsg(2)` for several chunks) while NIO holds nothing unsent
/// for it. When the socket takes less than it was given, the rest goes to NIO, which waits for
/// the socket to drain; everything after it goes through NIO too until NIO has sent it all, so
/// bytes stay in order. The output ends the response (the last chunk) and the connection when
/// the stream ends.
///
/// Why write to the socket ourselves: a node writes each event to thousands of connections, and
/// NIO's write path per connection (the pipeline, the pending-writes queue, a retain and release
/// of the event's shared buffer from every event loop) costs about as much CPU as the system call
/// itself. Sending from the shared buffer keeps only the system call. The socket's handle comes
/// from NIO's supported API (`Channel.withSocket`) once per stream, and is dropped the moment the
/// channel closes (NIO closes a socket on its loop and says so, in `channelInactive`, before
/// anything else runs there, so the number is never used after it may name another file); asking
/// NIO for it on every write costs a dynamic cast per write, 40 % more CPU per delivery at 3000
/// streams. Each buffer's bytes are sent inside the scope that lends them.
///
/// Invariant that makes `@unchecked Sendable` true: `context`, `writable`, `socket`, `inChannel`
/// and `needsFlush` are used only on `eventLoop` (asserted), which is all `StreamOutput` allows;
/// `channel` is thread-safe; the rest is immutable.
final class ChannelStreamOutput: StreamOutput, @unchecked Sendable {
    let eventLoop: any EventLoop
    let channel: any Channel
    private let context: ChannelHandlerContext
    /// Counts the times the socket took less than it was given.
    private let deferredWrites: Counter?

    /// The connection's socket while bytes may be sent to it directly (after `beginDirectWrites()`,
    /// until a send failed or the channel closed); -1 otherwise.
    private var socket: CInt = -1
    /// Writes handed to NIO that it has not sent yet. While there are any, writes queue behind
    /// them in NIO, so that nothing overtakes them.
    private var inChannel = 0
    /// NIO holds writes that were not flushed.
    private var needsFlush = false

    /// The output writing from `context`, on its channel's event loop.
    /// - Parameter deferredWrites: counts the times the socket took less than it was given.
    init(context: ChannelHandlerContext, deferredWrites: Counter? = nil) {
        self.eventLoop = context.eventLoop
        self.channel = context.channel
        self.context = context
        self.deferredWrites = deferredWrites
    }

    /// From now on bytes go to the socket itself when NIO holds none: call it once the HTTP codec
    /// has left the connection, before the stream's first byte is written.
    func beginDirectWrites() {
        eventLoop.assertInEventLoop()
        guard inChannel == 0, !needsFlush, channel.isActive else { return }
        // A channel that cannot lend its socket (not a socket channel) keeps NIO's write path.
        socket = channel.withSocket { $0 } ?? -1
    }

    /// The channel closed: no byte goes to its socket directly again (its number may soon name
    /// another file).
    func socketClosed() {
        socket = -1
    }

    /// Whether bytes are sent to the socket directly now.
    var writesDirectly: Bool { socket >= 0 && inChannel == 0 }

    func write(_ bytes: ByteBuffer) {
        eventLoop.assertInEventLoop()
        guard writesDirectly else {
            writeThroughChannel(bytes)
            return
        }
        let sent = bytes.withUnsafeReadableBytes { Self.send(socket, $0) }
        if sent < bytes.readableBytes {
            deferredWrites?.increment()
            writeRest(of: CollectionOfOne(bytes), sent: sent)
        }
    }

    func write(_ events: ArraySlice<StoredMessage>) {
        writeGathered(events.lazy.map(\.chunk))
    }

    func write(chunks: [ByteBuffer]) {
        writeGathered(chunks)
    }

    /// Writes `chunks` in order: several at once with one `sendmsg`, else as `write(_:)` does.
    private func writeGathered<Chunks: RandomAccessCollection<ByteBuffer>>(_ chunks: Chunks) {
        eventLoop.assertInEventLoop()
        guard writesDirectly, chunks.count > 1 else {
            if chunks.count == 1 {
                write(chunks[chunks.startIndex])
            } else {
                for chunk in chunks {
                    writeThroughChannel(chunk)
                }
            }
            return
        }
        let count = min(chunks.count, Self.maximumChunksPerSend)
        let (sent, total) = Self.send(socket, chunks: chunks.prefix(count))
        if sent < total { deferredWrites?.increment() }
        if sent < total || count < chunks.count {
            writeRest(of: chunks, sent: sent)
        }
    }

    func flush() {
        eventLoop.assertInEventLoop()
        guard needsFlush else { return }
        needsFlush = false
        context.flush()
    }

    /// Whether the connection is below its high-water mark: kept by its `RelayRequestHandler` as
    /// NIO reports changes, so the fan-out reads a field it already has in cache rather than the
    /// channel's atomic, once per subscriber per batch. While bytes go to the socket directly NIO
    /// holds none, so it stays true.
    var writable = true

    var isWritable: Bool { writable }

    func close() {
        channel.close(promise: nil)
    }

    func endResponse() {
        eventLoop.assertInEventLoop()
        guard channel.isActive else { return }
        // The last chunk, then the connection closes once it is sent: nothing else can follow a
        // stream on it.
        let channel = self.channel
        var rest = Self.lastChunk
        if writesDirectly {
            let sent = rest.withUnsafeReadableBytes { Self.send(socket, $0) }
            if sent == rest.readableBytes {
                channel.close(promise: nil)
                return
            }
            rest.moveReaderIndex(forwardBy: sent)
        }
        // NIO sends in order: when the last chunk is sent, so is everything before it.
        socket = -1
        context.writeAndFlush(NIOAny(rest)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// Hands what the socket did not take to NIO: `chunks` from byte `sent` on.
    private func writeRest(of chunks: some Sequence<ByteBuffer>, sent: Int) {
        var skip = sent
        for chunk in chunks {
            if skip >= chunk.readableBytes {
                skip -= chunk.readableBytes
                continue
            }
            writeThroughChannel(skip == 0 ? chunk : chunk.getSlice(at: chunk.readerIndex + skip, length: chunk.readableBytes - skip)!)
            skip = 0
        }
        flush()
    }

    /// Queues `bytes` in NIO. While direct writes are possible, each such write is counted until
    /// NIO has sent it, and direct writes resume only when none is left.
    private func writeThroughChannel(_ bytes: ByteBuffer) {
        needsFlush = true
        guard socket >= 0 else {
            context.write(NIOAny(bytes), promise: nil)
            return
        }
        inChannel += 1
        let promise = eventLoop.makePromise(of: Void.self)
        promise.futureResult.assumeIsolated().whenComplete { [self] result in
            inChannel -= 1
            // A write NIO failed (the connection broke or closed): NIO closes the channel, and
            // the socket must not be written to again.
            if case .failure = result { socket = -1 }
        }
        context.write(NIOAny(bytes), promise: promise)
    }

    /// `send(2)` of `bytes`, without `SIGPIPE`; returns how many bytes the socket took (0 when it
    /// is full). On an error (the connection broke) it returns 0 too: the bytes then go to NIO,
    /// which meets the same error, closes the channel and fails the write, and that failure ends
    /// direct writes.
    private static func send(_ descriptor: CInt, _ bytes: UnsafeRawBufferPointer) -> Int {
        bytesSent { Glibc.send(descriptor, bytes.baseAddress, bytes.count, CInt(MSG_NOSIGNAL)) }
    }

    /// `sendmsg(2)` of `chunks`, as `send` does one buffer; returns how many bytes the socket
    /// took and how many there were. Each chunk's bytes are lent by its own
    /// `withUnsafeReadableBytes`, the scopes nested one in another, and `sendmsg` runs in the
    /// innermost: no pointer is used outside the scope that lent it.
    private static func send<Chunks: Collection<ByteBuffer>>(_ descriptor: CInt, chunks: Chunks) -> (sent: Int, total: Int) {
        withUnsafeTemporaryAllocation(of: iovec.self, capacity: chunks.count) { vectors in
            func gather(_ index: Chunks.Index, slot: Int, total: Int) -> (Int, Int) {
                guard index < chunks.endIndex else {
                    var message = msghdr()
                    message.msg_iov = vectors.baseAddress
                    message.msg_iovlen = slot
                    return (bytesSent { sendmsg(descriptor, &message, CInt(MSG_NOSIGNAL)) }, total)
                }
                return chunks[index].withUnsafeReadableBytes { bytes in
                    vectors[slot] = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
                    return gather(chunks.index(after: index), slot: slot + 1, total: total + bytes.count)
                }
            }
            return gather(chunks.startIndex, slot: 0, total: 0)
        }
    }

    /// What a send call took: retried when a signal interrupted it, 0 for a full socket or an error.
    private static func bytesSent(_ call: () -> Int) -> Int {
        while true {
            let sent = call()
            if sent >= 0 { return sent }
            if errno == EINTR { continue }
            return 0
        }
    }

    /// Chunks sent with one `sendmsg`; more go through NIO behind them.
    private static let maximumChunksPerSend = 64

    /// The zero-length chunk that ends a chunked body.
    private static let lastChunk = ByteBuffer(staticString: "0\r\n\r\n")
}

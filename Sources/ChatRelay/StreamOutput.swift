import NIOCore

/// Where a live stream's bytes go: its connection.
///
/// The hub writes each event's shared bytes straight to the connection from the connection's own
/// event loop: no task, continuation or copy per subscriber. Every member but `eventLoop` is used
/// on `eventLoop` only.
public protocol StreamOutput: Sendable {
    /// The event loop of the connection.
    var eventLoop: any EventLoop { get }
    /// Writes bytes already framed for the connection (an HTTP/1.1 chunk). They may be sent at
    /// once; `flush()` makes sure they are.
    func write(_ bytes: ByteBuffer)
    /// Writes the chunks of `events`, in order: a subscriber's share of a fan-out batch. One call,
    /// so that an output can send them in one system call without keeping them.
    func write(_ events: ArraySlice<StoredMessage>)
    /// Writes `chunks` in order, in one call: a stream of several rooms' share of a batch (its own
    /// `id:` lines between the events' shared bytes).
    func write(chunks: [ByteBuffer])
    /// Sends what was written and not sent yet.
    func flush()
    /// False while the connection holds more unsent bytes than its high-water mark.
    var isWritable: Bool { get }
    /// Closes the connection at once (a subscriber too slow to keep up).
    func close()
    /// The stream ended (a drain, after its `retry:`, or the subscriber left): ends the response
    /// after what was written. An output whose HTTP handler ends the response itself does nothing.
    func endResponse()
}

extension StreamOutput {
    /// Each event's chunk, one `write(_:)` at a time.
    public func write(_ events: ArraySlice<StoredMessage>) {
        for index in events.indices {
            write(events[index].chunk)
        }
    }

    /// Each chunk, one `write(_:)` at a time.
    public func write(chunks: [ByteBuffer]) {
        for chunk in chunks {
            write(chunk)
        }
    }
}

import NIOCore

/// Where a live stream's bytes go: its connection.
///
/// The hub writes each event's shared bytes straight to the connection from the connection's own
/// event loop: no task, continuation or copy per subscriber. Every member but `eventLoop` is used
/// on `eventLoop` only.
public protocol StreamOutput: Sendable {
    /// The event loop of the connection.
    var eventLoop: any EventLoop { get }
    /// Queues bytes already framed for the connection (an HTTP/1.1 chunk), without flushing.
    func write(_ bytes: ByteBuffer)
    /// Sends what was queued.
    func flush()
    /// False while the connection holds more unsent bytes than its high-water mark.
    var isWritable: Bool { get }
    /// Closes the connection at once (a subscriber too slow to keep up).
    func close()
    /// The stream ended (a drain, after its `retry:`, or the subscriber left): ends the response
    /// after what was queued. An output whose HTTP handler ends the response itself does nothing.
    func endResponse()
}

import NIOCore

extension Channel {
    /// Runs `body` with this TCP connection's socket, inside the scope NIO lends it for
    /// (`withUnsafeTransportIfAvailable`, its supported API for this); nil when the channel has no
    /// socket to lend (it is not a socket channel, or it is closed).
    ///
    /// A stream's live events are written straight to the socket (`ChannelStreamOutput`): with
    /// thousands of streams, NIO's per-write path (pipeline, pending-writes queue, a retain of the
    /// shared event buffer from every event loop) costs more than the system call. `body` must not
    /// close the socket; a caller that keeps its number must stop using it when the channel closes
    /// (in `channelInactive`, which NIO runs on the loop before anything else after the close).
    ///
    /// Call it on the channel's event loop.
    func withSocket<Result>(_ body: (CInt) -> Result) -> Result? {
        try? pipeline.syncOperations.withUnsafeTransportIfAvailable(of: NIOBSDSocket.Handle.self) { body($0) }
    }
}

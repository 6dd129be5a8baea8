import NIOCore

#if canImport(Glibc)
import Glibc
#endif

extension Channel {
    /// The file descriptor of this TCP connection's socket, or nil if it cannot be found and proven.
    ///
    /// NIO keeps a channel's descriptor to itself. A stream's live events are written straight to
    /// it (`ChannelStreamOutput`): with thousands of streams, NIO's per-write path (pipeline,
    /// pending-writes queue, a retain of the shared event buffer from every event loop) costs
    /// more than the system call. So the descriptor is read once per stream through reflection
    /// (`BaseSocketChannel.socket`, `BaseSocket.descriptor`), and used only if the socket it
    /// names is this very connection: a TCP stream socket whose local and peer addresses are the
    /// channel's. Should NIO's layout change, this returns nil and streams use NIO's write path.
    ///
    /// Call it on the channel's event loop, while the channel is active.
    func connectedSocketDescriptor() -> CInt? {
        guard let socket = Self.child(labelled: "socket", of: self),
              let descriptor = Self.child(labelled: "descriptor", of: socket) as? CInt,
              descriptor >= 0
        else { return nil }
        guard let local = localAddress, let remote = remoteAddress,
              Self.isTCPStream(descriptor),
              Self.address(of: descriptor, peer: false) == local,
              Self.address(of: descriptor, peer: true) == remote
        else { return nil }
        return descriptor
    }

    /// The value of the stored property `label` of `subject` or of one of its superclasses.
    private static func child(labelled label: String, of subject: Any) -> Any? {
        var mirror: Mirror? = Mirror(reflecting: subject)
        while let current = mirror {
            if let child = current.children.first(where: { $0.label == label }) {
                return child.value
            }
            mirror = current.superclassMirror
        }
        return nil
    }

    private static func isTCPStream(_ descriptor: CInt) -> Bool {
        var type: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else { return false }
        return type == CInt(SOCK_STREAM.rawValue)
    }

    /// The socket's own (or its peer's) address, as NIO spells addresses.
    private static func address(of descriptor: CInt, peer: Bool) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                peer ? getpeername(descriptor, address, &length) : getsockname(descriptor, address, &length)
            }
        }
        guard status == 0 else { return nil }
        switch CInt(storage.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &storage) { raw in
                SocketAddress(raw.load(as: sockaddr_in.self), host: "")
            }
        case AF_INET6:
            return withUnsafeBytes(of: &storage) { raw in
                SocketAddress(raw.load(as: sockaddr_in6.self), host: "")
            }
        default:
            return nil
        }
    }
}

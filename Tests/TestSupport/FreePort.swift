import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP port on 127.0.0.1 that nothing listens on right now, and that no other caller in this
/// process has been given.
///
/// Tests run in parallel and start servers on these ports a moment later, so two rules keep them
/// apart: a port is handed out once per process, and it is taken below the kernel's ephemeral
/// range (32768 and up here), where no outgoing connection of a test, a relay or Redis picks its
/// source port in the meantime.
public func freeLoopbackPort() -> Int {
    while true {
        let port = Int.random(in: 20_000..<32_000)
        guard givenPorts.withLock({ $0.insert(port).inserted }) else { continue }
        if isBindable(port) { return port }
    }
}

/// A free port whose companion `port + offset` is free too, both given out once (a Redis
/// Cluster node listens on its port and on its cluster bus, 10 000 higher). Both stay below the
/// ephemeral range.
public func freeLoopbackPort(withCompanionAt offset: Int) -> Int {
    while true {
        let port = Int.random(in: 20_000..<(32_000 - offset))
        guard
            givenPorts.withLock({ given in
                guard !given.contains(port), !given.contains(port + offset) else { return false }
                given.insert(port)
                given.insert(port + offset)
                return true
            })
        else { continue }
        if isBindable(port), isBindable(port + offset) { return port }
    }
}

private let givenPorts = Mutex<Set<Int>>([])

/// Whether a listening socket could take `port` on 127.0.0.1 now.
private func isBindable(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    precondition(fd >= 0, "socket() failed")
    defer { close(fd) }
    // As servers bind (they set SO_REUSEADDR): a port whose last connection is in TIME_WAIT is
    // fine, one that something listens on is not.
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return bound == 0
}

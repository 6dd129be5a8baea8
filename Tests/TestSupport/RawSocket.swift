import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A bare TCP connection to 127.0.0.1: for a client that sends a request and then never reads,
/// which no HTTP client library will play.
public final class RawSocket: @unchecked Sendable {
    // @unchecked: the socket is used from one test task at a time.
    public private(set) var fd: Int32

    /// Connects and sends a plain HTTP/1.1 GET for `path` (for example a stream that is never read).
    public convenience init(port: Int, get path: String, receiveBuffer: Int32 = 4096) throws {
        try self.init(port: port, receiveBuffer: receiveBuffer)
        try send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    }

    /// Connects with a small receive buffer, so the server's writes back up quickly.
    /// - Parameter source: a loopback address to connect from (127.0.0.5, …), so a test can play
    ///   clients at different addresses; nil: the kernel's choice (127.0.0.1).
    /// - Parameter connectTimeout: give up connecting after this long (a server whose listen
    ///   queue is full, or that stopped, leaves a connect waiting for minutes); nil: wait.
    public init(port: Int, from source: String? = nil, receiveBuffer: Int32 = 4096, connectTimeout: Duration? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RawSocketError.failed("socket") }
        var size = receiveBuffer
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        // Closed here and marked on failure, so deinit (which runs for a class whose init throws
        // after setting every property) does not close the number again: by then it may be
        // another thread's socket.
        if let source, Self.withAddress(source, port: 0, { bind(fd, $0, $1) }) != 0 {
            Glibc.close(fd)
            fd = -1
            throw RawSocketError.failed("bind \(source)")
        }
        guard connect(port: port, timeout: connectTimeout) else {
            Glibc.close(fd)
            fd = -1
            throw RawSocketError.failed("connect")
        }
    }

    /// Connects to 127.0.0.1:`port`, within `timeout` if one is given.
    private func connect(port: Int, timeout: Duration?) -> Bool {
        guard let timeout else { return Self.withAddress("127.0.0.1", port: port, { Glibc.connect(fd, $0, $1) }) == 0 }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        if Self.withAddress("127.0.0.1", port: port, { Glibc.connect(fd, $0, $1) }) == 0 { return true }
        guard errno == EINPROGRESS else { return false }
        var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&descriptor, 1, milliseconds) > 0 else { return false }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error == 0
    }

    /// Calls `body` with the IPv4 socket address of `host` and `port`, and its length.
    private static func withAddress(_ host: String, port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr(host)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    public func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else { throw RawSocketError.failed("send") }
    }

    /// Sends as much of `bytes` as the connection takes now, without waiting; returns how much.
    public func sendWithoutWaiting(_ bytes: [UInt8]) -> Int {
        max(0, bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) })
    }

    /// The local port of the connection.
    public var localPort: Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Bytes the kernel holds for the loopback connection from `localPort` to `remotePort`
    /// (`/proc/net/tcp`): sent and not yet acknowledged (`tx_queue`), received and not yet read by
    /// the process that owns the socket (`rx_queue`). Nil when there is no such connection.
    public static func queues(localPort: Int, remotePort: Int) -> (sent: Int, unread: Int)? {
        // Read to its end: the file says it is empty, and a single read gets only its first page.
        guard let file = FileHandle(forReadingAtPath: "/proc/net/tcp"), let data = try? file.readToEnd() else { return nil }
        try? file.close()
        let table = String(decoding: data, as: UTF8.self)
        func hex(_ port: Int) -> String {
            let digits = String(port, radix: 16, uppercase: true)
            return ":" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
        }
        let (local, remote) = (hex(localPort), hex(remotePort))
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 4, fields[1].hasSuffix(local), fields[2].hasSuffix(remote) else { continue }
            let queues = fields[4].split(separator: ":").compactMap { Int($0, radix: 16) }
            guard queues.count == 2 else { return nil }
            return (queues[0], queues[1])
        }
        return nil
    }

    /// What arrives within `timeout` (until the peer pauses after sending something), as text.
    public func receive(timeout: Duration) async -> String {
        var received: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let wait: Duration = received.isEmpty ? .milliseconds(50) : .milliseconds(10)
            guard await readable(within: wait) else {
                if received.isEmpty { continue } else { break }
            }
            guard readAvailable(into: &received) else { break }
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Everything received from now until `done` holds for it, the peer closes, or `timeout`
    /// passes; as text.
    public func receive(until done: (String) -> Bool, timeout: Duration) async -> String {
        var received: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard await readable(within: .milliseconds(20)) else { continue }
            guard readAvailable(into: &received) else { break }
            if done(String(decoding: received, as: UTF8.self)) { break }
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Whether the socket has something to read (or was closed) within `wait`. It sleeps in
    /// short steps rather than blocking in `poll`: the concurrency pool has one thread per core,
    /// and a test that held one while waiting would slow every other test beside it.
    private func readable(within wait: Duration) async -> Bool {
        let deadline = ContinuousClock.now + wait
        while true {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&descriptor, 1, 0) > 0 { return true }
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Appends what one read returns; false when the peer closed or the read failed.
    private func readAvailable(into received: inout [UInt8]) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        guard n > 0 else { return false }
        received.append(contentsOf: buffer[0..<n])
        return true
    }

    /// True when the peer has closed the connection (a read returns 0 or a reset), without blocking.
    /// Reads and discards what is pending to find out, so only call it when the data no longer matters.
    /// Reads at most `chunk` bytes at a time with `pause` between reads, as a client slower than
    /// its server does, until `done` holds for everything received so far or `timeout` passes. On
    /// a thread of its own, so the test's tasks go on meanwhile.
    public func receiveSlowly(chunk: Int, pause: Duration, timeout: Duration, until done: @escaping @Sendable ([UInt8]) -> Bool) async
        -> [UInt8]
    {
        let fd = self.fd
        return await withCheckedContinuation { continuation in
            Thread {
                var received: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: chunk)
                let deadline = ContinuousClock.now + timeout
                let pauseMicroseconds = useconds_t(pause.components.seconds * 1_000_000 + pause.components.attoseconds / 1_000_000_000_000)
                while ContinuousClock.now < deadline, !done(received) {
                    var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    guard poll(&descriptor, 1, 20) > 0 else { continue }
                    let n = recv(fd, &buffer, buffer.count, 0)
                    if n <= 0 { break }
                    received.append(contentsOf: buffer[0..<n])
                    usleep(pauseMicroseconds)
                }
                continuation.resume(returning: received)
            }.start()
        }
    }

    public func peerClosed() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n == 0 { return true }
            if n < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
        }
    }

    /// Closes the connection with a reset (RST) instead of an orderly end of stream, as a client
    /// whose network went away or whose process was killed does.
    public func reset() {
        guard fd >= 0 else { return }
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close()
    }

    /// Closes the connection (the peer sees end of stream).
    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit {
        close()
    }
}

public enum RawSocketError: Error {
    case failed(String)
}

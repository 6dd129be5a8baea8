import Foundation

/// A real `redis-server` on a free loopback port, with its own data directory, started for one
/// test and stopped by pid. It can be killed and started again on the same port and data.
public final class RedisServer: @unchecked Sendable {
    // @unchecked: `process` is replaced only by start()/kill(), which a test calls from one task.
    public let port: Int
    public let directory: String
    public let extraArguments: [String]
    private var process: ChildProcess?

    public var url: String { "redis://127.0.0.1:\(port)" }

    /// - Parameter appendOnly: keep an fsync-always append-only file, so a restart keeps every
    ///   acknowledged write (what a deployment that promises no loss runs).
    ///   - port: where it listens (default: a free one).
    public init(appendOnly: Bool = true, arguments: [String] = [], port: Int? = nil) async throws {
        self.port = port ?? freeLoopbackPort()
        directory = NSTemporaryDirectory() + "chat-relay-redis-\(self.port)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        extraArguments = (appendOnly ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]) + arguments
        try await start()
    }

    /// Starts the server (again) and waits until it answers PING.
    public func start() async throws {
        let process = try ChildProcess(
            "/usr/bin/redis-server",
            [
                "--port", "\(port)", "--bind", "127.0.0.1", "--dir", directory, "--save", "", "--daemonize", "no",
                "--logfile", directory + "/redis.log",
            ] + extraArguments)
        self.process = process
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if try await ping() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw RelayProcessError.notReady(log: (try? String(contentsOfFile: directory + "/redis.log", encoding: .utf8)) ?? "")
    }

    /// True if the server answers PING (a raw RESP exchange, independent of the client under test).
    public func ping() async throws -> Bool {
        guard let socket = try? RawSocket(port: port, receiveBuffer: 65536) else { return false }
        try socket.send("*1\r\n$4\r\nPING\r\n")
        let reply = await socket.receive(timeout: .seconds(1))
        return reply.hasPrefix("+PONG") || reply.hasPrefix("-NOAUTH")
    }

    /// Kills the server at once (SIGKILL) and waits until it is gone.
    public func kill() async {
        guard let process else { return }
        self.process = nil
        await process.kill()
    }

    /// Stops the server and removes its data.
    public func stop() async {
        await kill()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Freezes the server (SIGSTOP): its connections stay open and nothing answers, as with a
    /// server stuck in swap or a partitioned network. `thaw()` lets it go on.
    public func freeze() {
        process?.signal(SIGSTOP)
    }

    public func thaw() {
        process?.signal(SIGCONT)
    }

    /// Kills the server without waiting: for `defer` at the end of a test.
    public func killNow() {
        process?.signal(SIGKILL)
    }

    deinit {
        killNow()
        // KEEP_TEST_DATA=1 keeps the data directory and its redis.log, to read after a failure.
        if ProcessInfo.processInfo.environment["KEEP_TEST_DATA"] == nil {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }
}

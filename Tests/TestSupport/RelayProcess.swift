import Foundation

/// A real `chat-relay` process on a free loopback port, started for one test and stopped by pid.
public final class RelayProcess: Sendable {
    public let host: String
    public let port: Int
    public let nodeID: String
    public let logPath: String
    private let process: ChildProcess

    /// The relay binary: `$CHAT_RELAY_BIN`, else `chat-relay` beside the test bundle (same build).
    public static var binaryPath: String {
        if let path = ProcessInfo.processInfo.environment["CHAT_RELAY_BIN"] { return path }
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundle.appendingPathComponent("chat-relay").path
    }

    public var baseURL: String { "http://\(host):\(port)" }
    public var pid: Int32 { process.pid }
    public var isRunning: Bool { process.isRunning }

    /// Starts the node and waits until `/health/live` answers.
    /// - Parameter arguments: flags after `serve --host H --port P --node-id N`.
    /// - Parameter host: a loopback address (127.0.0.2, … let several nodes share one port, behind one name).
    /// - Parameter environment: variables set for the node on top of the test process's.
    public init(
        nodeID: String = "node-\(UInt32.random(in: 0...UInt32.max))", host: String = "127.0.0.1", port: Int? = nil,
        arguments: [String] = [],
        environment extra: [String: String] = [:]
    ) async throws {
        self.host = host
        self.port = port ?? freeLoopbackPort()
        self.nodeID = nodeID
        self.logPath = NSTemporaryDirectory() + "chat-relay-\(nodeID)-\(host)-\(self.port).log"
        try? FileManager.default.removeItem(atPath: logPath)
        var environment = ProcessInfo.processInfo.environment
        environment["LOG_LEVEL"] = environment["LOG_LEVEL"] ?? "info"
        environment.merge(extra) { _, new in new }
        process = try ChildProcess(
            Self.binaryPath,
            ["serve", "--host", host, "--port", "\(self.port)", "--node-id", nodeID] + arguments,
            logPath: logPath,
            environment: environment
        )
        try await waitUntilServing()
    }

    private func waitUntilServing() async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            guard isRunning else { throw RelayProcessError.exited(status: -1, log: log()) }
            // Its own answer (X-Relay-Node), not that of some other server on the port.
            if let reply = try? await HTTP.get("\(baseURL)/health/live", timeout: .seconds(1)), reply.status == 200 {
                guard reply.header("X-Relay-Node") == nodeID else { throw RelayProcessError.portTaken(port: port, log: log()) }
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw RelayProcessError.notReady(log: log())
    }

    /// Sends a signal (SIGTERM, SIGKILL, …).
    public func signal(_ signal: Int32) {
        process.signal(signal)
    }

    /// Waits for the process to exit and returns its exit status (128 + signal if a signal ended
    /// it), or nil after `timeout`.
    public func waitForExit(timeout: Duration) async -> Int32? {
        await process.waitForExit(timeout: timeout)
    }

    /// Stops the node (SIGKILL if it does not exit after SIGTERM) and waits for it.
    public func stop() async {
        guard isRunning else { return }
        signal(SIGTERM)
        if await waitForExit(timeout: .seconds(15)) == nil {
            signal(SIGKILL)
            _ = await waitForExit(timeout: .seconds(5))
        }
    }

    /// Kills the node at once (SIGKILL), without waiting: for `defer` at the end of a test.
    public func kill() {
        signal(SIGKILL)
    }

    /// The node's log so far.
    public func log() -> String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Resident memory only this process maps (`Private_Clean` + `Private_Dirty`), from /proc,
    /// in bytes: what its heap and stacks hold. Unlike the proportional set size, it does not
    /// move when other processes sharing its binary's pages (other nodes of a test run) start
    /// or stop.
    public func privateBytes() -> Int? {
        guard let rollup = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8) else { return nil }
        var kilobytes = 0
        var found = false
        for line in rollup.split(separator: "\n") where line.hasPrefix("Private_Clean:") || line.hasPrefix("Private_Dirty:") {
            guard let value = line.split(separator: " ").compactMap({ Int($0) }).first else { return nil }
            kilobytes += value
            found = true
        }
        return found ? kilobytes * 1024 : nil
    }

    /// Resident memory of the process, from /proc, in bytes.
    public func residentBytes() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kilobytes = line.split(separator: " ").compactMap { Int($0) }.first
            return kilobytes.map { $0 * 1024 }
        }
        return nil
    }

}

public enum RelayProcessError: Error, CustomStringConvertible {
    case exited(status: Int32, log: String)
    /// Another server answered on the node's port.
    case portTaken(port: Int, log: String)
    case notReady(log: String)

    public var description: String {
        switch self {
        case .exited(let status, let log): "chat-relay exited with status \(status) before serving:\n\(log)"
        case .portTaken(let port, let log): "another server answers on chat-relay's port \(port):\n\(log)"
        case .notReady(let log): "chat-relay did not answer /health/live within 20 s:\n\(log)"
        }
    }
}

import Foundation

/// A real `chat-relay` process on a free loopback port, started for one test and stopped by pid.
public final class RelayProcess: @unchecked Sendable {
    // @unchecked: `process` is set once in init and only read afterwards; Foundation's Process
    // is itself safe to query and signal from any thread.
    public let port: Int
    public let nodeID: String
    public let logPath: String
    private let process: Process

    /// The relay binary: `$CHAT_RELAY_BIN`, else `chat-relay` beside the test bundle (same build).
    public static var binaryPath: String {
        if let path = ProcessInfo.processInfo.environment["CHAT_RELAY_BIN"] { return path }
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundle.appendingPathComponent("chat-relay").path
    }

    public var baseURL: String { "http://127.0.0.1:\(port)" }
    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { !ChildProcess.hasExited(process.processIdentifier) && process.isRunning }

    /// Starts the node and waits until `/health/live` answers.
    /// - Parameter arguments: flags after `serve --host 127.0.0.1 --port P --node-id N`.
    public init(nodeID: String = "node-\(UInt32.random(in: 0...UInt32.max))", port: Int? = nil, arguments: [String] = []) async throws {
        self.port = port ?? freeLoopbackPort()
        self.nodeID = nodeID
        self.logPath = NSTemporaryDirectory() + "chat-relay-\(nodeID)-\(self.port).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)!
        process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binaryPath)
        process.arguments = ["serve", "--host", "127.0.0.1", "--port", "\(self.port)", "--node-id", nodeID] + arguments
        process.standardOutput = log
        process.standardError = log
        var environment = ProcessInfo.processInfo.environment
        environment["LOG_LEVEL"] = environment["LOG_LEVEL"] ?? "info"
        process.environment = environment
        try process.run()
        try await waitUntilServing()
    }

    private func waitUntilServing() async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            guard isRunning else { throw RelayProcessError.exited(status: -1, log: log()) }
            if (try? await HTTP.get("\(baseURL)/health/live", timeout: .seconds(1)))?.status == 200 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw RelayProcessError.notReady(log: log())
    }

    /// Sends a signal (SIGTERM, SIGKILL, …).
    public func signal(_ signal: Int32) {
        Foundation.kill(process.processIdentifier, signal)
    }

    /// Waits for the process to exit and returns its exit status (128 + signal if a signal ended
    /// it), or nil after `timeout`. Reaps the child itself rather than trusting Foundation to.
    public func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            let result = waitpid(process.processIdentifier, &status, WNOHANG)
            if result == process.processIdentifier {
                let signal = status & 0x7F
                return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
            }
            if result == -1 {
                // Foundation reaped it first: its status is then known there.
                return process.isRunning ? nil : process.terminationStatus
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
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

    /// Resident memory of the process, from /proc, in bytes.
    public func residentBytes() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kilobytes = line.split(separator: " ").compactMap { Int($0) }.first
            return kilobytes.map { $0 * 1024 }
        }
        return nil
    }

    deinit {
        Foundation.kill(process.processIdentifier, SIGKILL)
    }
}

public enum RelayProcessError: Error, CustomStringConvertible {
    case exited(status: Int32, log: String)
    case notReady(log: String)

    public var description: String {
        switch self {
        case .exited(let status, let log): "chat-relay exited with status \(status) before serving:\n\(log)"
        case .notReady(let log): "chat-relay did not answer /health/live within 20 s:\n\(log)"
        }
    }
}

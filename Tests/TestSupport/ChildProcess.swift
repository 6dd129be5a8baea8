import Foundation
import Synchronization

/// A child process that tests start and stop by pid, safely.
///
/// Exit is detected with our own `waitpid` as well as Foundation's (seen here: a SIGKILLed child
/// left a zombie that `Process.isRunning` still reported), and once the child is known to have
/// exited it is never signalled again: pids are reused quickly here (pid_max is 32768), and a
/// late SIGKILL would hit some other process.
public final class ChildProcess: Sendable {
    private let process: Process
    private let exitStatus = Mutex<Int32?>(nil)

    /// Starts `executable` with `arguments`, its output appended to `logPath` (or discarded).
    public init(_ executable: String, _ arguments: [String], logPath: String? = nil, environment: [String: String]? = nil) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let logPath {
            if !FileManager.default.fileExists(atPath: logPath) { FileManager.default.createFile(atPath: logPath, contents: nil) }
            let handle = FileHandle(forWritingAtPath: logPath)!
            handle.seekToEndOfFile()
            process.standardOutput = handle
            process.standardError = handle
        } else {
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        self.process = process
    }

    public var pid: Int32 { process.processIdentifier }

    /// The exit status (128 + signal when a signal ended it), once the child has exited.
    public var status: Int32? {
        exitStatus.withLock { known in
            if let known { return known }
            if !process.isRunning {
                // Foundation reaped it (the pid may already belong to another process).
                known = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
                return known
            }
            var raw: Int32 = 0
            let result = waitpid(process.processIdentifier, &raw, WNOHANG)
            if result == process.processIdentifier {
                let signal = raw & 0x7F
                known = signal == 0 ? (raw >> 8) & 0xFF : 128 + signal
            } else if result == -1 {
                // Reaped elsewhere: by Foundation, between its check above and ours, which then
                // has the status a moment later. -1 only if it never does.
                let deadline = ContinuousClock.now + .seconds(1)
                while process.isRunning, ContinuousClock.now < deadline { usleep(1000) }
                known =
                    process.isRunning
                    ? -1
                    : process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
            }
            return known
        }
    }

    public var isRunning: Bool { status == nil }

    /// Sends `signal` unless the child is known to have exited.
    public func signal(_ signal: Int32) {
        guard isRunning else { return }
        Foundation.kill(process.processIdentifier, signal)
    }

    /// Waits for the exit status, or nil after `timeout`.
    public func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status { return status }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return status
    }

    /// SIGKILL, then waits (at most `timeout`) until the child is gone.
    public func kill(timeout: Duration = .seconds(5)) async {
        signal(SIGKILL)
        _ = await waitForExit(timeout: timeout)
    }

    deinit {
        signal(SIGKILL)
    }
}

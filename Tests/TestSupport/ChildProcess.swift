import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A child process that tests start and stop by pid, safely.
///
/// Started with `posix_spawn` rather than Foundation's `Process`: on Linux, `Process.run()`
/// crashes now and then (a read past the end of a `dirent` while it lists /proc/self/fd,
/// swift-corelibs-foundation #5472), seen here once the suite spawned enough processes with many
/// descriptors open. The child gets /dev/null as input, its output appended to a log file (or
/// discarded), no other descriptor of the test process, and a process group of its own.
///
/// Once the child is known to have exited it is never signalled again: pids are reused quickly
/// here (pid_max is 32768), and a late SIGKILL would hit some other process.
public final class ChildProcess: Sendable {
    public let pid: Int32
    private let exitStatus = Mutex<Int32?>(nil)

    /// Starts `executable` with `arguments`, its output appended to `logPath` (or discarded), with
    /// `environment` (or the test process's). `errorLogPath`: standard error apart.
    public init(
        _ executable: String, _ arguments: [String], logPath: String? = nil, errorLogPath: String? = nil,
        environment: [String: String]? = nil
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if let errorLogPath {
            posix_spawn_file_actions_addopen(&actions, 2, errorLogPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        // The test process's sockets (listeners, clients) must not live on in the child.
        // glibc (2.34+) declares this only for _GNU_SOURCE, which Swift's Glibc module does not
        // define: looked up by name.
        if let closeFrom = Self.addCloseFrom {
            _ = closeFrom(&actions, 3)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)

        let environment = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var child: pid_t = 0
        let result = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw ChildProcessError.spawnFailed(executable: executable, errno: result) }
        pid = child
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    /// glibc's `posix_spawn_file_actions_addclosefrom_np`.
    private static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: AddCloseFrom.self)
    }

    /// Runs `executable` to its end (or `timeout`, when it is killed) and returns its exit
    /// status, standard output and standard error. It waits by sleeping, never by blocking a
    /// thread: the concurrency pool has one thread per core, and a test that held one while
    /// `redis-cli` waited would slow every other test beside it.
    public static func run(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(60)) async throws -> (
        status: Int32, output: String, errors: String
    ) {
        let path = NSTemporaryDirectory() + "chat-relay-run-\(UUID().uuidString)"
        defer {
            try? FileManager.default.removeItem(atPath: path + ".out")
            try? FileManager.default.removeItem(atPath: path + ".err")
        }
        let child = try ChildProcess(executable, arguments, logPath: path + ".out", errorLogPath: path + ".err")
        let deadline = ContinuousClock.now + timeout
        var pause = Duration.milliseconds(1)
        while child.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(50))
        }
        if child.isRunning {
            child.signal(SIGKILL)
            while child.isRunning { try? await Task.sleep(for: .milliseconds(5)) }
        }
        let output = (try? String(contentsOfFile: path + ".out", encoding: .utf8)) ?? ""
        let errors = (try? String(contentsOfFile: path + ".err", encoding: .utf8)) ?? ""
        return (child.status ?? -1, output, errors)
    }

    /// The exit status (128 + signal when a signal ended it), once the child has exited.
    public var status: Int32? {
        exitStatus.withLock { known in
            if let known { return known }
            var raw: Int32 = 0
            let result = waitpid(pid, &raw, WNOHANG)
            if result == pid {
                let signal = raw & 0x7F
                known = signal == 0 ? (raw >> 8) & 0xFF : 128 + signal
            } else if result == -1 {
                // Not our child any more (reaped elsewhere): gone, status unknown.
                known = -1
            }
            return known
        }
    }

    public var isRunning: Bool { status == nil }

    /// Sends `signal` unless the child is known to have exited.
    public func signal(_ signal: Int32) {
        guard isRunning else { return }
        Glibc.kill(pid, signal)
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
        // Reaped, so no zombie is left behind for the rest of the run.
        _ = status
    }
}

public enum ChildProcessError: Error, CustomStringConvertible {
    case spawnFailed(executable: String, errno: Int32)

    public var description: String {
        switch self {
        case .spawnFailed(let executable, let errno): "cannot start \(executable): \(String(cString: strerror(errno)))"
        }
    }
}

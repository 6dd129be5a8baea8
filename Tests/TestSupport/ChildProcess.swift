import Foundation

/// Exit detection for child processes that does not depend on Foundation's `Process` having
/// reaped them (seen here: a SIGKILLed child left as a zombie that `isRunning` still reports).
enum ChildProcess {
    /// True once `pid` has exited: reaped now by us, already reaped elsewhere, or gone.
    static func hasExited(_ pid: Int32) -> Bool {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid { return true }
        if result == -1 { return errno == ECHILD || errno == ESRCH }
        return false
    }

    /// Sends SIGKILL and waits (at most `timeout`) until the process is gone.
    static func kill(_ pid: Int32, timeout: Duration = .seconds(5)) async {
        Foundation.kill(pid, SIGKILL)
        let deadline = ContinuousClock.now + timeout
        while !hasExited(pid), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

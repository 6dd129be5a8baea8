import Foundation

/// A named thread running one body to its end, that another thread can wait for: the home of a
/// blocking hiredis connection, so no Swift concurrency or NIO thread ever blocks on one.
struct DedicatedThread: Sendable {
    private let finished = DispatchSemaphore(value: 0)

    /// Starts `body` on a new thread named `name`.
    init(name: String, body: @escaping @Sendable () -> Void) {
        let finished = self.finished
        let thread = Thread {
            body()
            finished.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Blocks until the body has returned. Call once.
    func join() {
        finished.wait()
    }
}

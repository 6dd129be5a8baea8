import NIOCore

/// Runs a task's jobs on one event loop: a connection's handler with this executor preferred
/// runs where its connection's I/O happens, so reading a request, awaiting the broker and writing
/// the answer take no hop through the global executor's threads (each such hop is a thread
/// wake-up, and under load a wait for a core).
///
/// Work run this way must not block (nothing here does: even Redis is reached through connections
/// on the event loops) and must not wait synchronously on a future of the same loop.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}

import ChatRelay
import NIOCore
import NIOPosix
import Synchronization

/// A `StreamOutput` that records what the hub writes, on a real event loop.
final class RecordingOutput: StreamOutput, Sendable {
    let eventLoop: any EventLoop
    private struct State {
        var written: [ByteBuffer] = []
        var flushes = 0
        var closed = false
        var ended = false
        var writable = true
    }
    private let state = Mutex(State())

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func write(_ bytes: ByteBuffer) {
        eventLoop.preconditionInEventLoop()
        state.withLock { $0.written.append(bytes) }
    }

    func flush() {
        eventLoop.preconditionInEventLoop()
        state.withLock { $0.flushes += 1 }
    }

    var isWritable: Bool {
        get { state.withLock { $0.writable } }
        set { state.withLock { $0.writable = newValue } }
    }

    func close() { state.withLock { $0.closed = true } }

    func endResponse() { state.withLock { $0.ended = true } }

    var written: [ByteBuffer] { state.withLock { $0.written } }
    var flushes: Int { state.withLock { $0.flushes } }
    var isClosed: Bool { state.withLock { $0.closed } }
    var isEnded: Bool { state.withLock { $0.ended } }

    /// The `id:` (ms part) of every message frame written, in order.
    var messageIDs: [UInt64] {
        written.compactMap { chunk in
            let text = String(buffer: chunk)
            guard let start = text.range(of: "id: ") else { return nil }
            return UInt64(text[start.upperBound...].prefix { $0.isNumber })
        }
    }

    /// Everything written, as text.
    var text: String { written.map { String(buffer: $0) }.joined() }

    /// Waits (at most 5 s) until `condition` holds after the loop ran everything queued so far.
    func settle(until condition: () -> Bool = { true }) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        repeat {
            try await eventLoop.submit {}.get()
            if condition() { return }
            try await Task.sleep(for: .milliseconds(5))
        } while ContinuousClock.now < deadline
    }
}

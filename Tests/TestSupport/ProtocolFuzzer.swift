import Foundation
import Synchronization

/// Sends fuzz cases to a live node, each on a connection of its own brought to the case's stage,
/// from several loopback addresses at once, while a watch checks the node: alive, ready, and its
/// bystander streams (one room, and several rooms) still getting every message posted.
///
/// The node is expected to run with `--history 50` (`prepare()` then makes two rooms whose
/// stream of both from the start is cut at its limit: the `afterStreamEnded` stage).
public final class ProtocolFuzzer: Sendable {
    public struct Report: Sendable, CustomStringConvertible {
        public var seed: UInt64
        public var cases = 0
        public var byStage: [FuzzCase.Stage: Int] = [:]
        public var seconds = 0.0
        /// Problems the watch saw (the node died, was not ready, a bystander missed a message),
        /// with the cases in flight then.
        public var failures: [String] = []
        /// The cases in flight when a failure was seen: a corpus file's entries.
        public var suspects: [FuzzCase] = []

        public var description: String {
            let stages = FuzzCase.Stage.allCases.map { "\($0.rawValue) \(byStage[$0] ?? 0)" }.joined(separator: ", ")
            return "\(cases) inputs in \(String(format: "%.1f", seconds)) s, seed \(seed) (\(stages)); \(failures.count) failures"
        }
    }

    private let node: RelayProcess
    private let seed: UInt64
    private let state: Mutex<State>
    /// Connections kept open by `hold` cases, closed oldest first past 40.
    private let held = Mutex<[RawSocket]>([])

    private struct State {
        var report: Report
        var inFlight: [Int: FuzzCase] = [:]
        var stop = false
    }

    public init(node: RelayProcess, seed: UInt64) {
        self.node = node
        self.seed = seed
        state = Mutex(State(report: Report(seed: seed)))
    }

    /// Posts 55 messages to each of the rooms the `afterStreamEnded` stage streams from the start.
    public func prepare() async throws {
        for room in ["fuzz-long", "fuzz-long-2"] {
            for index in 0..<55 {
                let reply = try await HTTP.postMessage("\(node.baseURL)/rooms/\(room)/messages", user: "f", text: "m\(index)")
                guard reply.status == 201 else { throw RawSocketError.failed("prepare: POST answered \(reply.status): \(reply.body)") }
            }
        }
    }

    /// Random cases for `duration`, `workers` at a time; stops at the first failure the watch sees.
    public func run(for duration: Duration, workers: Int = 6) async throws -> Report {
        let started = ContinuousClock.now
        let deadline = started + duration
        let watch = try await BystanderWatch(node: node)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<workers {
                group.addTask { [self] in
                    var inputs = FuzzInputs(seed: seed &+ UInt64(worker) &* 0x1000_0000_01)
                    var index = 0
                    while ContinuousClock.now < deadline, !state.withLock({ $0.stop }) {
                        let stage = inputs.pick(FuzzCase.Stage.allCases)
                        await send(inputs.next(stage), worker: worker, source: "127.0.\(10 + worker).\(1 + index % 200)")
                        index += 1
                    }
                }
            }
            group.addTask { [self] in
                while ContinuousClock.now < deadline, !state.withLock({ $0.stop }) {
                    if let failure = await watch.check() { fail(failure) }
                    try? await Task.sleep(for: .milliseconds(500))
                }
            }
            try await group.waitForAll()
        }
        // After the last input: the node must still be whole.
        if !state.withLock({ $0.stop }), let failure = await watch.check() { fail(failure) }
        watch.close()
        closeHeld()
        return state.withLock { state in
            state.report.seconds = (ContinuousClock.now - started) / .seconds(1)
            return state.report
        }
    }

    /// Sends each case of `cases` in turn (a corpus), checking the node after each.
    public func replay(_ cases: [FuzzCase]) async throws -> Report {
        let started = ContinuousClock.now
        let watch = try await BystanderWatch(node: node)
        for (index, fuzzCase) in cases.enumerated() {
            await send(fuzzCase, worker: 0, source: "127.0.10.\(1 + index % 200)")
            if let failure = await watch.check() {
                fail(failure)
                break
            }
        }
        watch.close()
        closeHeld()
        return state.withLock { state in
            state.report.seconds = (ContinuousClock.now - started) / .seconds(1)
            return state.report
        }
    }

    private func closeHeld() {
        let sockets = held.withLock { sockets in
            defer { sockets = [] }
            return sockets
        }
        for socket in sockets { socket.close() }
    }

    private func fail(_ failure: String) {
        state.withLock { state in
            state.stop = true
            state.report.failures.append(failure)
            state.report.suspects += state.inFlight.values
        }
    }

    /// Brings a connection to the case's stage, sends the bytes, and leaves as the case says.
    private func send(_ fuzzCase: FuzzCase, worker: Int, source: String) async {
        state.withLock { state in
            state.inFlight[worker] = fuzzCase
            state.report.cases += 1
            state.report.byStage[fuzzCase.stage, default: 0] += 1
        }
        defer { _ = state.withLock { $0.inFlight.removeValue(forKey: worker) } }
        guard let socket = try? RawSocket(port: node.port, from: source, receiveBuffer: 65536, connectTimeout: .seconds(2)) else { return }
        let bytes = fuzzCase.bytes
        switch fuzzCase.stage {
        case .requestHead:
            write(bytes, splits: fuzzCase.splits, to: socket)
        case .requestBody, .chunkedBody:
            // A JSON POST's head, whose body the case is: of its length, or chunked.
            let framing = fuzzCase.stage == .requestBody ? "Content-Length: \(bytes.count)" : "Transfer-Encoding: chunked"
            let head = "POST /rooms/fuzz/messages HTTP/1.1\r\nHost: f\r\nContent-Type: application/json\r\n\(framing)\r\n\r\n"
            _ = socket.sendWithoutWaiting(Array(head.utf8))
            write(bytes, splits: fuzzCase.splits, to: socket)
        case .afterAnswer:
            _ = socket.sendWithoutWaiting(Array("GET /health/live HTTP/1.1\r\nHost: f\r\n\r\n".utf8))
            _ = await socket.receive(until: { $0.contains("{\"status\":\"ok\"}") }, timeout: .seconds(5))
            write(bytes, splits: fuzzCase.splits, to: socket)
        case .stream, .multiRoomStream, .afterStreamEnded:
            let target =
                switch fuzzCase.stage {
                case .stream: "/rooms/fuzz/events"
                case .multiRoomStream: "/events?room=fuzz&room=fuzz-b&presence=1&user=f"
                default: "/events?room=fuzz-long&room=fuzz-long-2&lastEventId=0"
                }
            _ = socket.sendWithoutWaiting(Array("GET \(target) HTTP/1.1\r\nHost: f\r\nAccept: text/event-stream\r\n\r\n".utf8))
            _ = await socket.receive(until: { $0.contains(": chat-relay node") }, timeout: .seconds(5))
            write(bytes, splits: fuzzCase.splits, to: socket)
        case .pipelinedBehindStream:
            write(Array("GET /rooms/fuzz/events HTTP/1.1\r\nHost: f\r\n\r\n".utf8) + bytes, splits: fuzzCase.splits, to: socket)
        }
        switch fuzzCase.ending {
        case .close:
            _ = await socket.receive(timeout: .milliseconds(100))
            socket.close()
        case .reset:
            socket.reset()
        case .hold:
            let closing = held.withLock { sockets -> RawSocket? in
                sockets.append(socket)
                return sockets.count > 40 ? sockets.removeFirst() : nil
            }
            closing?.close()
        }
    }

    /// Writes `bytes` in pieces of the sizes `splits` gives, without waiting for a full socket
    /// (a node that stops reading must not stall the fuzzer: what does not fit is dropped).
    private func write(_ bytes: [UInt8], splits: [Int], to socket: RawSocket) {
        var rest = bytes[...]
        for size in splits where !rest.isEmpty {
            let piece = rest.prefix(size)
            _ = socket.sendWithoutWaiting(Array(piece))
            rest = rest.dropFirst(piece.count)
        }
        if !rest.isEmpty { _ = socket.sendWithoutWaiting(Array(rest)) }
    }
}

/// What the fuzzer checks between inputs: the node is alive and ready, and a message posted now
/// reaches a stream of its room and a stream of several rooms that were open all along.
final class BystanderWatch: Sendable {
    private let node: RelayProcess
    private let single: SSEClient
    private let multiple: SSEClient
    private let ticks = Mutex(0)

    init(node: RelayProcess) async throws {
        self.node = node
        single = try await SSEClient("\(node.baseURL)/rooms/bystander/events")
        multiple = try await SSEClient("\(node.baseURL)/events?room=bystander-2&room=bystander")
    }

    /// Nil while all is well; else what is wrong.
    func check() async -> String? {
        guard node.isRunning else { return "the node exited:\n" + String(node.log().suffix(4000)) }
        guard let ready = try? await HTTP.get("\(node.baseURL)/health/ready", timeout: .seconds(5)), ready.status == 200 else {
            return "the node was not ready"
        }
        let tick = ticks.withLock { value in
            value += 1
            return value
        }
        let text = "tick \(tick)"
        var posted = false
        for _ in 0..<20 where !posted {
            if let reply = try? await HTTP.postMessage("\(node.baseURL)/rooms/bystander/messages", user: "watch", text: text),
                reply.status == 201
            {
                posted = true
            } else {
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        guard posted else { return "a bystander's message was not accepted" }
        for (name, stream) in [("one-room", single), ("several-room", multiple)] {
            let arrived = await stream.wait(timeout: .seconds(10)) { client in
                client.messages.contains { $0["text"] as? String == text }
            }
            guard arrived else {
                return "the \(name) bystander stream did not get \(text) (ended: \(stream.ended))"
            }
        }
        return nil
    }

    func close() {
        single.close()
        multiple.close()
    }
}

import NIOCore
import Synchronization

/// The in-process broker of a node that runs alone (no Redis): a history ring per room in memory,
/// live events handed straight to the node's hub.
///
/// History lives as long as the process; a restart starts empty.
public final class EmbeddedBroker: Broker {
    private struct State {
        var rooms: [RoomName: HistoryRing] = [:]
        var ids = MessageIDGenerator()
        var idempotency = IdempotencyCache()
    }

    public let kind = "embedded"
    public let historyCapacity: Int
    private let sink: any LiveEventSink
    private let clock: @Sendable () -> UInt64
    private let state = Mutex(State())

    /// - Parameters:
    ///   - history: messages retained per room (`--history`).
    ///   - sink: the node's hub.
    ///   - clock: milliseconds since the epoch; tests pass their own.
    public init(history: Int, sink: any LiveEventSink, clock: @escaping @Sendable () -> UInt64 = Timestamp.nowMilliseconds) {
        self.historyCapacity = max(1, history)
        self.sink = sink
        self.clock = clock
    }

    public var isReady: Bool { true }

    public func publish(_ draft: MessageDraft, idempotencyKey: String?) async throws -> PublishOutcome {
        let now = clock()
        return state.withLock { state in
            if let idempotencyKey, let first = state.idempotency.lookup(room: draft.room, key: idempotencyKey, now: now) {
                return .duplicate(first)
            }
            let id = state.ids.next(nowMilliseconds: now)
            let stored = StoredMessage(Message(id: id, room: draft.room, user: draft.user, text: draft.text, timeMs: now))
            state.rooms[draft.room, default: HistoryRing(capacity: historyCapacity)].append(stored)
            if let idempotencyKey {
                state.idempotency.record(room: draft.room, key: idempotencyKey, message: stored, now: now)
            }
            // Delivered under the lock, so the hub sees each room's messages in id order.
            sink.deliver(stored)
            return .created(stored)
        }
    }

    public func replay(room: RoomName, after id: MessageID) async throws -> Replay {
        state.withLock { state in
            state.rooms[room]?.replay(after: id) ?? Replay(oldestRetained: nil, messagesLost: false, messages: [])
        }
    }

    public func latestID(room: RoomName) async throws -> MessageID? {
        state.withLock { $0.rooms[room]?.newest }
    }

    public func history(room: RoomName, after id: MessageID?, limit: Int) async throws -> [StoredMessage] {
        state.withLock { state in
            guard let ring = state.rooms[room] else { return [] }
            if let id { return ring.messages(after: id, limit: limit) }
            return ring.latest(limit: limit)
        }
    }

    /// Nothing to connect: waits until cancelled, then returns.
    public func run() async throws {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
    }
}

import NIOCore
import Synchronization

/// The in-process broker of a node that runs alone (no Redis): a history ring per room in memory,
/// live events handed straight to the node's hub.
///
/// History lives as long as the process; a restart starts empty. A room whose last message is
/// older than `historyTTL` is forgotten by a periodic sweep (`run()`). All rooms together hold at
/// most `historyMemory` bytes: past it the least recently used rooms (by their last message or
/// read) are forgotten (`RoomRecency`). A room that starts (again) remembers that whatever came
/// before its first message is gone, so a client resuming from an id of before gets `reset`,
/// never silence.
public final class EmbeddedBroker: Broker {
    private struct State {
        var rooms: [RoomName: HistoryRing] = [:]
        var ids = MessageIDGenerator()
        var idempotency = IdempotencyCache()
        /// Who is in each room: the node's entries by `PresenceEntry.field`.
        var presence: [RoomName: [String: PresenceEntry]] = [:]
        /// What every room's history costs, in all (`HistoryRing.bytes`).
        var historyBytes = 0
        /// Which rooms were used least recently.
        var recency = RoomRecency()
    }

    public let kind = "embedded"
    public let historyCapacity: Int
    /// A room is forgotten this long after its last message; nil: never.
    public let historyTTL: Duration?
    private let sink: any LiveEventSink
    private let clock: @Sendable () -> UInt64
    private let state = Mutex(State())
    private let tickets: TicketStore
    /// The most bytes all rooms' history may hold (`--history-memory`); 0: no bound.
    public let historyMemory: Int
    private let metrics: RelayMetrics?

    /// - Parameters:
    ///   - history: messages retained per room (`--history`).
    ///   - historyTTL: how long a room is kept after its last message (`--history-ttl`); nil: for ever.
    ///   - historyMemory: the most bytes all rooms' history may hold (`--history-memory`); 0: no bound.
    ///   - sink: the node's hub.
    ///   - metrics: for the history's size and its evictions.
    ///   - clock: milliseconds since the epoch; tests pass their own.
    public init(
        history: Int, historyTTL: Duration? = nil, historyMemory: Int = 0, sink: any LiveEventSink, metrics: RelayMetrics? = nil,
        clock: @escaping @Sendable () -> UInt64 = Timestamp.nowMilliseconds
    ) {
        self.historyCapacity = max(1, history)
        self.historyTTL = historyTTL
        self.historyMemory = max(0, historyMemory)
        self.metrics = metrics
        self.sink = sink
        self.clock = clock
        self.tickets = TicketStore(clock: clock)
    }

    public func storeTicket(_ ticket: String, value: [UInt8], ttl: Duration) async throws {
        try tickets.store(ticket, value: value, ttl: ttl)
    }

    public func redeemTicket(_ ticket: String) async throws -> [UInt8]? {
        tickets.redeem(ticket)
    }

    public var isReady: Bool { true }

    public func signal(_ signal: StoredMessage) async throws {
        sink.deliver(signal)
    }

    public func updatePresence(_ entries: [PresenceEntry]) async throws {
        for entry in entries {
            state.withLock { state in
                state.presence[entry.room, default: [:]][entry.field] = entry.connections > 0 ? entry : nil
                if state.presence[entry.room]?.isEmpty == true { state.presence[entry.room] = nil }
            }
            sink.presence.apply(entry)
        }
    }

    public func presence(room: RoomName) async throws -> [PresenceEntry] {
        state.withLock { Array(($0.presence[room] ?? [:]).values) }
    }

    public func publish(_ draft: MessageDraft, idempotency: Idempotency?) async throws -> PublishOutcome {
        let now = clock()
        return state.withLock { state in
            if let idempotency, let first = state.idempotency.lookup(room: draft.room, key: idempotency.key, now: now) {
                return first.outcome(for: draft, idempotency)
            }
            let id = state.ids.next(nowMilliseconds: now)
            let stored = StoredMessage(Message(id: id, room: draft.room, user: draft.user, name: draft.name, text: draft.text, timeMs: now))
            let before = state.rooms[draft.room]?.bytes ?? 0
            if state.rooms[draft.room]?.append(stored) == nil {
                var ring = HistoryRing(capacity: historyCapacity)
                ring.append(stored)
                // What the room held before (if it expired, was evicted, or before a restart) is gone.
                ring.markLost(below: id)
                state.rooms[draft.room] = ring
            }
            state.historyBytes += (state.rooms[draft.room]?.bytes ?? 0) - before
            state.recency.use(draft.room)
            if historyMemory > 0, state.historyBytes > historyMemory { evict(&state, keeping: draft.room) }
            if let idempotency {
                state.idempotency.record(
                    room: draft.room, key: idempotency.key,
                    record: IdempotencyRecord(id: id, timeMs: now, fingerprint: idempotency.fingerprint), now: now)
            }
            // Delivered under the lock, so the hub sees each room's messages in id order.
            sink.deliver(stored)
            return .created(stored)
        }
    }

    public func replay(room: RoomName, after id: MessageID, limit: Int) async throws -> Replay {
        state.withLock { state in
            if state.rooms[room] != nil { state.recency.use(room) }
            // No such room: it expired, or the node restarted, or it never had a message; a client
            // with an id from it may have missed something.
            return state.rooms[room]?.replay(after: id, limit: limit) ?? Replay(oldestRetained: nil, messagesLost: true, messages: [])
        }
    }

    /// Nothing to do: every message is handed to the hub, which knows its subscribers.
    public func listen(room: RoomName) async throws {}

    public func latestID(room: RoomName) async throws -> MessageID? {
        state.withLock { $0.rooms[room]?.newest }
    }

    public func history(room: RoomName, after id: MessageID?, limit: Int) async throws -> [StoredMessage] {
        state.withLock { state in
            guard let ring = state.rooms[room] else { return [] }
            state.recency.use(room)
            if let id { return ring.messages(after: id, limit: limit) }
            return ring.latest(limit: limit)
        }
    }

    /// Rooms held now.
    public var roomCount: Int { state.withLock { $0.rooms.count } }

    /// What all rooms' history costs now, in bytes.
    public var historyBytes: Int { state.withLock { $0.historyBytes } }

    /// Forgets the least recently used rooms until the history fits `historyMemory` again; the room
    /// `keeping` (which just took a message) last, and then only its oldest messages: the message
    /// that was just stored stays.
    private func evict(_ state: inout State, keeping current: RoomName) {
        var evicted = 0
        while state.historyBytes > historyMemory, let room = state.recency.leastRecent(except: current) {
            state.historyBytes -= state.rooms.removeValue(forKey: room)?.bytes ?? 0
            evicted += 1
        }
        if state.historyBytes > historyMemory, var ring = state.rooms[current] {
            let before = ring.bytes
            // Keep the newest part of the room that fits.
            var keep = ring.count
            var bytes = before
            while keep > 1, state.historyBytes - before + bytes > historyMemory {
                bytes -= ring.memoryCost(at: ring.count - keep)
                keep -= 1
            }
            ring.dropOldest(keeping: keep)
            state.historyBytes += ring.bytes - before
            state.rooms[current] = ring
        }
        if evicted > 0 { metrics?.roomsEvicted.increment(by: Int64(evicted)) }
    }

    /// Nothing to connect: sweeps expired rooms until cancelled, then returns.
    public func run() async throws {
        guard let historyTTL else {
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            return
        }
        // A tenth of the TTL between sweeps, from 1 s to 1 min: a room outlives its TTL by at most that.
        let interval = min(.seconds(60), max(.seconds(1), historyTTL / 10))
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            sweepExpired()
        }
    }

    /// Forgets every room whose last message is older than the TTL, and returns how many.
    /// The rooms are checked in batches, each under the lock for a moment only, so publishing goes
    /// on between them however many rooms there are.
    @discardableResult
    public func sweepExpired() -> Int {
        guard let historyTTL else { return 0 }
        let ttlMilliseconds = UInt64(max(0, historyTTL.wholeMilliseconds))
        let rooms = state.withLock { Array($0.rooms.keys) }
        var removed = 0
        var start = rooms.startIndex
        while start < rooms.endIndex {
            let batch = rooms[start..<min(start + 1024, rooms.endIndex)]
            start = batch.endIndex
            let now = clock()
            guard now > ttlMilliseconds else { break }
            let expiredBefore = now - ttlMilliseconds
            removed += state.withLock { state in
                var count = 0
                for room in batch {
                    // The newest id's milliseconds are the time of the room's last message.
                    if let newest = state.rooms[room]?.newest, newest.ms < expiredBefore {
                        state.historyBytes -= state.rooms.removeValue(forKey: room)?.bytes ?? 0
                        count += 1
                    }
                }
                // A dictionary keeps its capacity: give back the storage of what was swept.
                if count > 0 { state.recency.keep(only: state.rooms) }
                if count > 0, state.rooms.count * 4 < state.rooms.capacity {
                    var compacted = [RoomName: HistoryRing](minimumCapacity: state.rooms.count)
                    for (room, ring) in state.rooms { compacted[room] = ring }
                    state.rooms = compacted
                }
                return count
            }
        }
        return removed
    }
}

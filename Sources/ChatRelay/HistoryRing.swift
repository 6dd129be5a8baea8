/// The last `capacity` messages of one room, oldest first, in a fixed ring (the embedded broker's history).
///
/// It remembers below which id messages are gone (the newest it evicted, or where a room that
/// began after a loss began), so it can tell a resuming client whether the gap since its last id
/// can still be filled.
public struct HistoryRing: Sendable {
    public let capacity: Int
    private var storage: [StoredMessage] = []
    /// Index of the oldest message in `storage` once the ring is full.
    private var head = 0
    /// A client whose last id is below this one missed messages that are gone: the newest id
    /// evicted, or the first id of a room marked as beginning after a loss (`markLost(below:)`).
    /// Nil while nothing was lost.
    public private(set) var lostBelow: MessageID?

    public init(capacity: Int) {
        precondition(capacity > 0, "a history ring holds at least one message")
        self.capacity = capacity
    }

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.isEmpty }

    /// The oldest retained message's id.
    public var oldest: MessageID? { storage.isEmpty ? nil : self[0].id }
    /// The newest retained message's id.
    public var newest: MessageID? { storage.isEmpty ? nil : self[storage.count - 1].id }

    /// The message at `offset` from the oldest.
    public subscript(offset: Int) -> StoredMessage {
        storage[(head + offset) % storage.count]
    }

    /// Appends a message; ids must arrive in increasing order.
    public mutating func append(_ message: StoredMessage) {
        if storage.count < capacity {
            storage.append(message)
        } else {
            lostBelow = max(lostBelow ?? .zero, storage[head].id)
            storage[head] = message
            head = (head + 1) % capacity
        }
    }

    /// Records that messages before `id` may have existed and are gone: a room that expired, or
    /// whose node restarted, starts again with its next message. A client resuming from below
    /// `id` then gets `reset` rather than silence.
    public mutating func markLost(below id: MessageID) {
        lostBelow = max(lostBelow ?? .zero, id)
    }

    /// What a client that last saw `id` missed: the retained messages after it, oldest first (at
    /// most `limit`), and whether some of what it missed was already evicted (the `reset` case).
    public func replay(after id: MessageID, limit: Int = .max) -> Replay {
        let messages = self.messages(after: id, limit: limit)
        if let lostBelow, id < lostBelow {
            return Replay(oldestRetained: oldest, messagesLost: true, messages: messages)
        }
        return Replay(oldestRetained: oldest, messagesLost: false, messages: messages)
    }

    /// Up to `limit` messages after `id`, oldest first.
    public func messages(after id: MessageID, limit: Int) -> [StoredMessage] {
        let start = firstIndex(after: id)
        let end = start + min(max(0, limit), storage.count - start)
        return (start..<end).map { self[$0] }
    }

    /// The newest `limit` messages, oldest first.
    public func latest(limit: Int) -> [StoredMessage] {
        let start = max(0, storage.count - max(0, limit))
        return (start..<storage.count).map { self[$0] }
    }

    /// The offset of the first message with an id greater than `id` (binary search: ids increase).
    private func firstIndex(after id: MessageID) -> Int {
        var low = 0
        var high = storage.count
        while low < high {
            let mid = (low + high) / 2
            if self[mid].id <= id { low = mid + 1 } else { high = mid }
        }
        return low
    }
}

/// What a resuming subscriber is sent before it goes live.
public struct Replay: Sendable {
    /// The oldest message the room still retains, if any.
    public var oldestRetained: MessageID?
    /// True when messages after the client's id are no longer retained: the stream starts with `reset`.
    public var messagesLost: Bool
    /// The retained messages after the client's id, oldest first.
    public var messages: [StoredMessage]

    public init(oldestRetained: MessageID?, messagesLost: Bool, messages: [StoredMessage]) {
        self.oldestRetained = oldestRetained
        self.messagesLost = messagesLost
        self.messages = messages
    }
}

extension Replay {
    /// The most messages a stream's opening replays, whatever its rooms: one more than a room
    /// retains at most (`history`, and the slack Redis trims the room's stream in), so that a
    /// single room's replay is never cut. A stream of several rooms shares it between its rooms
    /// (`RelayNode.readReplays`); what a room has beyond its part reaches the client on its next
    /// connection, resumed from where this one left it. So one stream of 100 rooms does not make
    /// the node hold 100 rooms' histories at once.
    public static func streamLimit(history: Int) -> Int {
        max(1, history) + RedisBroker.trimSlack(max(1, history)) + 1
    }
}

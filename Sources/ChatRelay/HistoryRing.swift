/// The last `capacity` messages of one room, oldest first, in a fixed ring (the embedded broker's history).
///
/// It remembers below which id messages are gone (the newest it evicted, or where a room that
/// began after a loss began), so it can tell a resuming client whether the gap since its last id
/// can still be filled.
///
/// Each message is kept as its id and its JSON's bytes, in an array of exactly their size: a
/// `ByteBuffer` (what a `StoredMessage` is made of) rounds its storage up to a power of two, up to
/// twice the message, for as long as history keeps it. A replay or history read frames the JSON
/// again (one buffer a message); live delivery never comes here.
public struct HistoryRing: Sendable {
    /// A retained message: enough to make its `StoredMessage` again.
    struct Entry: Sendable {
        let id: MessageID
        let json: [UInt8]

        /// What holding it costs: its bytes, the array's header and the entry itself.
        var memoryCost: Int { json.count + HistoryRing.entryOverhead }
    }

    /// An array's header (32 bytes) and its allocation's rounding, and the entry in the ring.
    static let entryOverhead = 64

    public let capacity: Int
    private var storage: [Entry] = []
    /// Index of the oldest message in `storage` once the ring is full.
    private var head = 0
    /// The room of the messages (every message of a ring is of one room).
    private var room = RoomName.lobby
    /// A client whose last id is below this one missed messages that are gone: the newest id
    /// evicted, or the first id of a room marked as beginning after a loss (`markLost(below:)`).
    /// Nil while nothing was lost.
    public private(set) var lostBelow: MessageID?
    /// What the retained messages cost in memory, in all: their JSON's bytes and a small constant
    /// each.
    public private(set) var bytes = 0

    public init(capacity: Int) {
        precondition(capacity > 0, "a history ring holds at least one message")
        self.capacity = capacity
    }

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.isEmpty }

    /// The oldest retained message's id.
    public var oldest: MessageID? { storage.isEmpty ? nil : entry(0).id }
    /// The newest retained message's id.
    public var newest: MessageID? { storage.isEmpty ? nil : entry(storage.count - 1).id }

    /// The entry at `offset` from the oldest.
    private func entry(_ offset: Int) -> Entry {
        storage[(head + offset) % storage.count]
    }

    /// The message at `offset` from the oldest, framed again.
    public subscript(offset: Int) -> StoredMessage {
        let entry = entry(offset)
        return StoredMessage(id: entry.id, room: room, jsonBytes: entry.json)
    }

    /// What the message at `offset` from the oldest costs.
    public func memoryCost(at offset: Int) -> Int { entry(offset).memoryCost }

    /// Appends a message; ids must arrive in increasing order.
    public mutating func append(_ message: StoredMessage) {
        room = message.room
        let entry = Entry(id: message.id, json: Array(message.json.readableBytesView))
        bytes += entry.memoryCost
        if storage.count < capacity {
            storage.append(entry)
        } else {
            lostBelow = max(lostBelow ?? .zero, storage[head].id)
            bytes -= storage[head].memoryCost
            storage[head] = entry
            head = (head + 1) % capacity
        }
    }

    /// Drops all but the newest `count` messages (at least one stays), as eviction does: a client
    /// resuming from before them gets `reset`.
    public mutating func dropOldest(keeping count: Int) {
        let keep = min(storage.count, max(1, count))
        guard keep < storage.count else { return }
        lostBelow = max(lostBelow ?? .zero, entry(storage.count - keep - 1).id)
        storage = (storage.count - keep..<storage.count).map { entry($0) }
        head = 0
        bytes = storage.reduce(0) { $0 + $1.memoryCost }
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
            if entry(mid).id <= id { low = mid + 1 } else { high = mid }
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

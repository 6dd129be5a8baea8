/// Which rooms were used least recently, for the embedded broker's history budget: each use of
/// a room stamps it with a rising number and appends the stamp to a queue; the least recently
/// used room is the first one in the queue whose stamp is still its latest. O(1) per use
/// (amortised): the queue is rebuilt from the rooms' own stamps whenever stale entries are the
/// greater part of it, so it stays about as long as the rooms are many.
struct RoomRecency: Sendable {
    private var stamps: [RoomName: UInt64] = [:]
    private var queue: [(room: RoomName, stamp: UInt64)] = []
    private var start = 0
    private var next: UInt64 = 0

    /// Marks `room` as used now.
    mutating func use(_ room: RoomName) {
        next += 1
        stamps[room] = next
        queue.append((room, next))
        if queue.count - start > 2 * stamps.count + 1024 { rebuild() }
    }

    /// The room used least recently, unless it is `except` (the one being written to, used last
    /// of all, so then no other is left); it is forgotten here.
    mutating func leastRecent(except: RoomName) -> RoomName? {
        while start < queue.count {
            let entry = queue[start]
            guard stamps[entry.room] == entry.stamp else {
                start += 1
                continue
            }
            guard entry.room != except else { return nil }
            start += 1
            stamps[entry.room] = nil
            return entry.room
        }
        return nil
    }

    /// Forgets rooms that are gone (a sweep removed them).
    mutating func keep(only rooms: [RoomName: HistoryRing]) {
        guard stamps.count > rooms.count else { return }
        stamps = stamps.filter { rooms[$0.key] != nil }
        rebuild()
    }

    private mutating func rebuild() {
        queue = queue[start...].filter { stamps[$0.room] == $0.stamp }
        start = 0
    }

    /// Entries in the queue (for tests: it stays bounded).
    var queued: Int { queue.count - start }
}

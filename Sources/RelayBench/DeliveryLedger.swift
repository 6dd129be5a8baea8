/// What one subscriber received: a bit per message sequence number, so every loss, duplicate and
/// reordering is counted exactly, not estimated.
struct DeliveryLedger {
    private var bits: [UInt64]
    /// Highest sequence number received so far (-1 before the first).
    private(set) var highest = -1
    private(set) var distinct = 0
    private(set) var duplicates = 0
    private(set) var outOfOrder = 0
    /// Sequence numbers outside the run (another run's messages in the same room).
    private(set) var foreign = 0

    /// The subscriber's room among `rooms`: it gets messages `room`, `room + rooms`, ….
    private let room: Int
    private let rooms: Int
    private let messages: Int

    init(messages: Int, room: Int = 0, rooms: Int = 1) {
        bits = Array(repeating: 0, count: (messages + 63) / 64)
        self.room = room
        self.rooms = rooms
        self.messages = messages
    }

    /// Records message `sequence`; returns false when it is a duplicate or not of this run.
    mutating func record(_ sequence: Int) -> Bool {
        guard sequence >= 0, sequence / 64 < bits.count else {
            foreign += 1
            return false
        }
        let word = sequence >> 6
        let mask: UInt64 = 1 << UInt64(sequence & 63)
        if bits[word] & mask != 0 {
            duplicates += 1
            return false
        }
        bits[word] |= mask
        distinct += 1
        if sequence < highest {
            outOfOrder += 1
        } else {
            highest = sequence
        }
        return true
    }

    /// How many of the `accepted` messages this subscriber never got.
    func missing(of accepted: [UInt64]) -> Int {
        var missing = 0
        guard rooms > 1 else {
            for (index, word) in accepted.enumerated() where index < bits.count {
                missing += (word & ~bits[index]).nonzeroBitCount
            }
            return missing
        }
        // Only this room's messages: one in `rooms`.
        for sequence in stride(from: room, to: min(accepted.count * 64, messages), by: rooms) {
            let mask: UInt64 = 1 << UInt64(sequence & 63)
            if accepted[sequence >> 6] & mask != 0, bits[sequence >> 6] & mask == 0 { missing += 1 }
        }
        return missing
    }
}

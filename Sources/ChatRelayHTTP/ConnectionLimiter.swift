import Synchronization

/// Counts a node's open connections of every kind and decides what a new one gets
/// (`--max-open-connections`).
///
/// Up to `limit` connections are served. Past it a connection is still accepted, so that its
/// client gets a clear answer (`503` with `Retry-After`, then the connection closes) rather than
/// a hang in the listen queue; but only `refusalSlots` of those at a time, each bounded by the
/// request timeout. Past those, a new connection is closed at once.
final class ConnectionLimiter: Sendable {
    enum Admission: Equatable {
        case served
        /// Answer its first request with `503` and close.
        case refused
        /// Close it at once.
        case dropped
    }

    let limit: Int
    let refusalSlots: Int
    private let open = Atomic<Int>(0)

    init(limit: Int, refusalSlots: Int = 256) {
        self.limit = limit
        self.refusalSlots = refusalSlots
    }

    /// Counts a new connection in, and says what it gets. Every admitted connection, whatever
    /// it gets, must be `release`d when it closes.
    func admit() -> Admission {
        let count = open.wrappingAdd(1, ordering: .relaxed).newValue
        if count <= limit { return .served }
        return count <= limit + refusalSlots ? .refused : .dropped
    }

    /// Counts a closed connection out.
    func release() {
        open.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Connections open now.
    var count: Int { open.load(ordering: .relaxed) }
}

import Synchronization

/// Counts a node's open connections of every kind, in all and per client address, and decides
/// what a new one gets (`--max-open-connections`, `--max-connections-per-client`).
///
/// Up to `limit` connections are served, and up to `perClient` of one address. Past either a
/// connection is still accepted, so that its client gets a clear answer (`503`, or `429` past
/// its own bound, with `Retry-After`; then the connection closes) rather than a hang in the
/// listen queue; but only `refusalSlots` of those at a time (`refusalsPerClient` of one
/// address), each bounded by the request timeout. Past those, a new connection is closed at once.
final class ConnectionLimiter: Sendable {
    enum Admission: Equatable {
        case served
        /// Answer its first request with `503` (the node's limit) and close.
        case refused
        /// Answer its first request with `429` (its address's limit) and close.
        case refusedForClient
        /// Close it at once: past the node's refusals.
        case dropped
        /// Close it at once: past its address's refusals.
        case droppedForClient

        /// The connection is closed without an answer.
        var isDropped: Bool { self == .dropped || self == .droppedForClient }
    }

    let limit: Int
    let refusalSlots: Int
    private let open = Atomic<Int>(0)
    /// Connections per address; 0 as a limit counts none.
    private let perAddress: ClientCounts
    let refusalsPerClient: Int

    init(limit: Int, perClient: Int = 0, refusalSlots: Int = 256, refusalsPerClient: Int = 8) {
        self.limit = limit
        self.refusalSlots = refusalSlots
        self.perAddress = ClientCounts(limit: perClient)
        self.refusalsPerClient = refusalsPerClient
    }

    var perClient: Int { perAddress.limit }

    /// Counts a new connection in, and says what it gets. Every admitted connection, whatever
    /// it gets, must be `release`d (with the same `address`) when it closes.
    /// - Parameter address: the peer's address, or nil when it is not one client's (a trusted
    ///   proxy) or unknown: not counted per address.
    func admit(address: String?) -> Admission {
        let count = open.wrappingAdd(1, ordering: .relaxed).newValue
        let own = address.map { perAddress.add($0) } ?? 0
        if count > limit + refusalSlots { return .dropped }
        if perAddress.limit > 0, own > perAddress.limit + refusalsPerClient { return .droppedForClient }
        if count > limit { return .refused }
        if perAddress.limit > 0, own > perAddress.limit { return .refusedForClient }
        return .served
    }

    /// Counts a closed connection out.
    func release(address: String?) {
        open.wrappingSubtract(1, ordering: .relaxed)
        if let address { perAddress.release(address) }
    }

    /// Connections open now.
    var count: Int { open.load(ordering: .relaxed) }

    /// Connections open now from `address`.
    func count(from address: String) -> Int { perAddress.count(of: address) }
}

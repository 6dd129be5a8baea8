import ChatRelay
import Synchronization

/// Stream tickets issued on this node per user (token `sub`) and still alive: each ticket lives
/// at most `--ticket-ttl`, so tickets issued within that time bound what waits to be used. Past
/// `limit`, `POST /auth/tickets` gets `429` until the oldest runs out. Bounded: a user holds at
/// most `limit` entries, and users whose tickets all ran out are forgotten.
final class TicketQuota: Sendable {
    /// Tickets one user may have alive; 0: no limit.
    let limit: Int
    private let state = Mutex(State())
    private let clock: @Sendable () -> UInt64

    private struct State {
        /// Each user's tickets' expiry times (ms), oldest first.
        var expiries: [String: [UInt64]] = [:]
        var issuedSinceSweep = 0
    }

    /// - Parameter clock: milliseconds; tests pass their own.
    init(limit: Int, clock: @escaping @Sendable () -> UInt64 = Timestamp.nowMilliseconds) {
        self.limit = limit
        self.clock = clock
    }

    /// Counts a ticket of `user` living `ttl`, unless `user` has `limit` alive; else returns how
    /// long until the oldest runs out.
    func issue(for user: String, ttl: Duration) -> Duration? {
        guard limit > 0 else { return nil }
        let now = clock()
        return state.withLock { state in
            state.issuedSinceSweep += 1
            if state.issuedSinceSweep >= 4096 {
                state.issuedSinceSweep = 0
                state.expiries = state.expiries.filter { $0.value.last.map { $0 > now } ?? false }
            }
            var alive = state.expiries[user, default: []].drop { $0 <= now }
            if alive.count >= limit, let oldest = alive.first {
                state.expiries[user] = Array(alive)
                return .milliseconds(Int64(truncatingIfNeeded: oldest - now))
            }
            alive.append(now + UInt64(max(1, ttl.wholeMilliseconds)))
            state.expiries[user] = Array(alive)
            return nil
        }
    }

    /// Users with tickets counted now (for tests).
    var users: Int { state.withLock { $0.expiries.count } }
}

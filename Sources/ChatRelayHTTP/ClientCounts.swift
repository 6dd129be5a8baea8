import Synchronization

/// How many of something each client holds now (streams, connections), against a limit per
/// client. Only clients holding something have an entry: the table is as large as what is open.
final class ClientCounts: Sendable {
    /// The most one client may hold; 0: no limit (nothing is counted).
    let limit: Int
    private let counts = Mutex<[String: Int]>([:])

    init(limit: Int) {
        self.limit = limit
    }

    /// Counts one more for `client`, unless it holds `limit` already (then false, and nothing is
    /// counted). Every `true` must be `release`d once.
    func acquire(_ client: String) -> Bool {
        guard limit > 0 else { return true }
        return counts.withLock { counts in
            let held = counts[client, default: 0]
            guard held < limit else { return false }
            counts[client] = held + 1
            return true
        }
    }

    /// Counts one more for `client` whatever it holds, and says how many it holds now.
    func add(_ client: String) -> Int {
        guard limit > 0 else { return 0 }
        return counts.withLock { counts in
            let held = counts[client, default: 0] + 1
            counts[client] = held
            return held
        }
    }

    /// Counts one out for `client`.
    func release(_ client: String) {
        guard limit > 0 else { return }
        counts.withLock { counts in
            guard let held = counts[client] else { return }
            counts[client] = held > 1 ? held - 1 : nil
        }
    }

    /// What `client` holds now.
    func count(of client: String) -> Int {
        counts.withLock { $0[client, default: 0] }
    }

    /// Clients holding anything now.
    var clients: Int { counts.withLock { $0.count } }
}

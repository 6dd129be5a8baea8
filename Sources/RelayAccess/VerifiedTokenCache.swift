import Synchronization

/// Tokens already verified, with the identity each carries, until they expire: a client posts
/// with the same token for minutes, and verifying its signature every time (about 100 µs for
/// ES256) would cost more than the rest of a POST. Bounded: two generations of at most
/// `capacity` entries each; when the current one is full it becomes the previous one and the
/// one before is dropped, so the tokens in use stay and the rest age out.
///
/// Only what the signature makes true is cached (the identity); `exp` is checked again at every
/// lookup, and the claims the configuration checks (`iss`, `aud`, `nbf`) were checked before the
/// token was stored.
final class VerifiedTokenCache: Sendable {
    private struct Generations {
        var current: [String: Identity] = [:]
        var previous: [String: Identity] = [:]
    }

    private let generations = Mutex(Generations())
    let capacity: Int

    init(capacity: Int = 10_000) {
        self.capacity = capacity
    }

    /// The identity of `token` if it was verified and has not expired at `now` (seconds).
    func identity(of token: String, now: Double, leeway: Double) -> Identity? {
        generations.withLock { generations in
            if let identity = generations.current[token] {
                return now < identity.expiresAt + leeway ? identity : nil
            }
            guard let identity = generations.previous.removeValue(forKey: token), now < identity.expiresAt + leeway else { return nil }
            // In use: carried into the current generation.
            Self.insert(token, identity, into: &generations, capacity: capacity)
            return identity
        }
    }

    func store(_ token: String, _ identity: Identity) {
        generations.withLock { Self.insert(token, identity, into: &$0, capacity: capacity) }
    }

    private static func insert(_ token: String, _ identity: Identity, into generations: inout Generations, capacity: Int) {
        if generations.current.count >= capacity {
            generations.previous = generations.current
            generations.current = [:]
        }
        generations.current[token] = identity
    }

    var count: Int { generations.withLock { $0.current.count + $0.previous.count } }
}

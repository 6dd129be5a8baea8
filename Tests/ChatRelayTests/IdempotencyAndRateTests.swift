import ChatRelay
import Testing

@Suite struct IdempotencyCacheTests {
    @Test func remembersAKeyPerRoomForTenMinutes() {
        var cache = IdempotencyCache()
        let first = IdempotencyRecord(id: MessageID(ms: 100, seq: 0), timeMs: 100, fingerprint: 7)
        cache.record(room: .lobby, key: "k1", record: first, now: 1000)
        #expect(cache.lookup(room: .lobby, key: "k1", now: 2000)?.id == first.id)
        #expect(cache.lookup(room: RoomName("other")!, key: "k1", now: 2000) == nil)
        #expect(cache.lookup(room: .lobby, key: "k2", now: 2000) == nil)
        #expect(cache.lookup(room: .lobby, key: "k1", now: 1000 + IdempotencyCache.window - 1) != nil)
        #expect(cache.lookup(room: .lobby, key: "k1", now: 1000 + IdempotencyCache.window) == nil)
        #expect(cache.count == 0)
    }

    @Test func aKeyIsItsPostersAndItsFingerprintIsTheMessage() throws {
        let draft = MessageDraft(room: .lobby, user: "alice", text: "hi")
        let key = Idempotency(key: "k", poster: "sub alice", draft: draft)
        #expect(key == Idempotency(key: "k", poster: "sub alice", draft: draft))
        #expect(key.key != Idempotency(key: "k", poster: "sub bob", draft: draft).key)
        // The poster's length keeps the pair unambiguous: ("a b", "c") is not ("a", "b c").
        #expect(Idempotency(key: "c", poster: "a b", draft: draft).key != Idempotency(key: "b c", poster: "a", draft: draft).key)
        for other in [
            MessageDraft(room: .lobby, user: "alice", text: "hi!"), MessageDraft(room: .lobby, user: "alicf", text: "hi"),
            MessageDraft(room: .lobby, user: "alice", name: "Alice", text: "hi"),
            MessageDraft(room: .lobby, user: "alice", name: "", text: "hi"),
            MessageDraft(room: try #require(RoomName("x")), user: "alice", text: "hi"),
            MessageDraft(room: .lobby, user: "alicehi", text: ""),
        ] {
            #expect(Idempotency(key: "k", poster: "p", draft: other).fingerprint != key.fingerprint, "\(other)")
        }
        let record = IdempotencyRecord(id: MessageID(ms: 12, seq: 3), timeMs: 11, fingerprint: key.fingerprint)
        let text = "12-3 " + IdempotencyRecord.redisTail(timeMs: 11, fingerprint: key.fingerprint)
        #expect(IdempotencyRecord(redis: Array(text.utf8)) == record)
        for bad in ["", "12-3", "12-3 11", "x 11 ff", "12-3 x ff", "12-3 11 zz", "12-3 11 ff ", "12-3  11 ff"] {
            #expect(IdempotencyRecord(redis: Array(bad.utf8)) == nil, "\(bad)")
        }
    }

    @Test func staysWithinItsBound() {
        var cache = IdempotencyCache(maxEntries: 100)
        for index in 0..<5000 {
            cache.record(
                room: .lobby, key: "k\(index)",
                record: IdempotencyRecord(id: MessageID(ms: UInt64(index), seq: 0), timeMs: 0, fingerprint: 0), now: 0)
        }
        #expect(cache.count == 100)
        #expect(cache.lookup(room: .lobby, key: "k4999", now: 1) != nil)
        #expect(cache.lookup(room: .lobby, key: "k0", now: 1) == nil)
    }
}

@Suite struct RateLimiterTests {
    let second: UInt64 = 1_000_000_000

    @Test func allowsTheBurstThenRefusesWithTheWait() {
        var bucket = TokenBucket(rate: 2, burst: 3, now: 0)
        #expect(bucket.take(now: 0) == nil)
        #expect(bucket.take(now: 0) == nil)
        #expect(bucket.take(now: 0) == nil)
        let wait = bucket.take(now: 0)
        #expect(wait == .milliseconds(500))
        // Half a second later one token is back.
        #expect(bucket.take(now: second / 2) == nil)
        #expect(bucket.take(now: second / 2) != nil)
    }

    @Test func limitsEachClientOnItsOwn() {
        let limiter = RateLimiter(rate: 1, burst: 2)
        #expect(limiter.admit("a", now: 0) == nil)
        #expect(limiter.admit("a", now: 0) == nil)
        #expect(limiter.admit("a", now: 0) != nil)
        #expect(limiter.admit("b", now: 0) == nil)
        #expect(limiter.admit("a", now: second) == nil)
    }

    @Test func zeroRateMeansNoLimit() {
        let limiter = RateLimiter(rate: 0, burst: 1)
        for _ in 0..<1000 { #expect(limiter.admit("a", now: 0) == nil) }
        #expect(limiter.trackedClients == 0)
    }

    @Test func forgetsClientsToStayBounded() {
        let limiter = RateLimiter(rate: 1, burst: 1, maxClients: 100)
        for index in 0..<10_000 { _ = limiter.admit("client-\(index)", now: 0) }
        #expect(limiter.trackedClients <= 100)
    }
}

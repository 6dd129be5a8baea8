import NIOCore
import RedisClient
import Synchronization

/// Presence on Redis: each room's members in a hash (`RedisKeys.presence`), a field per node and
/// member, changed with the room's channel carrying the new entry to every node; and a sorted set
/// of the nodes that write them (`RedisKeys.presenceNodes`), each scored with the time it stops
/// being alive unless it refreshes. A node that dies stops refreshing: within `presenceTTL` (and
/// a third more, the refresh period) every other node sees it gone and its members leave.
extension RedisBroker {
    /// How long a room's presence hash outlives its last change (a node stores its entries
    /// again when it finds its mark lost, and every hour).
    static let presenceHashTTL = 24 * 3600

    /// One round trip per hash slot (one in all on a single Redis): per entry, the hash's field set
    /// or deleted, its expiry renewed, and the entry published on the room's channel.
    public func updatePresence(_ entries: [PresenceEntry]) async throws {
        var bySlot: [Int: [RedisCommand]] = [:]
        var slots: [Int] = []
        for entry in entries {
            let json = entry.json
            let key = RedisArgument(keys.presence(entry.room))
            let change: RedisCommand =
                entry.connections > 0
                ? ["HSET", key, RedisArgument(entry.field), RedisArgument(Array(json.readableBytesView))]
                : ["HDEL", key, RedisArgument(entry.field)]
            var payload = Array(entry.room.value.utf8)
            payload += " member ".utf8
            payload += json.readableBytesView
            let channel = routing == .room ? keys.channel(entry.room) : keys.channel
            // The room's keys and channel share its hash tag: one slot.
            let slot = deployment.isCluster ? keys.slot(entry.room) : 0
            if bySlot[slot] == nil { slots.append(slot) }
            bySlot[slot, default: []] += [
                change, ["EXPIRE", key, RedisArgument(Self.presenceHashTTL)],
                [publishCommandArgument, RedisArgument(channel), RedisArgument(payload)],
            ]
        }
        for slot in slots {
            _ = try await pipeline(bySlot[slot]!, slot: slot)
        }
    }

    public func presence(room: RoomName) async throws -> [PresenceEntry] {
        let reply = try await call(["HGETALL", RedisArgument(keys.presence(room))], slot: keys.slot(room))
        guard let fields = reply.array else { throw BrokerError.unavailable("unexpected reply to HGETALL: \(reply)") }
        let gone = presenceNodesGone.withLock { $0 }
        var entries: [PresenceEntry] = []
        var stale: [RedisArgument] = []
        var index = 0
        while index + 1 < fields.count {
            defer { index += 2 }
            guard let value = fields[index + 1].bytes, let entry = PresenceEntry(json: value) else { continue }
            if gone.contains(entry.node) {
                if let field = fields[index].bytes { stale.append(RedisArgument(field)) }
            } else {
                entries.append(entry)
            }
        }
        if !stale.isEmpty {
            // The entries of dead nodes go once someone reads them.
            _ = try? await call(["HDEL", RedisArgument(keys.presence(room))] + stale, slot: keys.slot(room))
        }
        return entries
    }

    /// Until cancelled, every third of `presenceTTL`: marks this node alive until a TTL from now,
    /// reports the nodes whose marks ran out, and stores this node's entries again when its mark
    /// was gone or had run out (Redis restarted without its data; the node was cut off) and
    /// every hour.
    func keepPresenceAlive() async {
        let book = sink.presence
        let key = keys.presenceNodes
        let slot = RedisKeySlot.of(key)
        let period = presenceTTL / 3
        var marked = false
        var lastStored = ContinuousClock.now
        while !Task.isCancelled {
            let now = Timestamp.nowMilliseconds()
            let ttl = UInt64(presenceTTL.wholeMilliseconds)
            do {
                let replies = try await pipeline(
                    [
                        ["ZSCORE", RedisArgument(key), RedisArgument(book.node)],
                        ["ZADD", RedisArgument(key), RedisArgument(String(now + ttl)), RedisArgument(book.node)],
                        ["ZRANGEBYSCORE", RedisArgument(key), "-inf", RedisArgument(String(now))],
                        // Nodes gone for a day are forgotten.
                        ["ZREMRANGEBYSCORE", RedisArgument(key), "-inf", RedisArgument(String(now - min(now, 86_400_000)))],
                    ], slot: slot)
                // The mark was missing (Redis lost it) or had run out (this node was taken for
                // gone, and its entries may have been dropped): store them again.
                let score = replies[0].bytes.flatMap { Double(String(decoding: $0, as: UTF8.self)) }
                let lost = marked && (score.map { $0 < Double(now) } ?? true)
                let gone = Set((replies[2].array ?? []).compactMap { $0.bytes.map { String(decoding: $0, as: UTF8.self) } })
                let newlyGone = presenceNodesGone.withLock { known in
                    defer { known = gone }
                    return gone.subtracting(known)
                }
                if !newlyGone.isEmpty {
                    logger.info("presence nodes gone", metadata: ["nodes": "\(newlyGone.sorted())"])
                    book.nodesGone(newlyGone)
                }
                if lost || ContinuousClock.now - lastStored > .seconds(3600) {
                    try await updatePresence(book.localEntries())
                    lastStored = ContinuousClock.now
                }
                marked = true
            } catch {
                logger.debug("presence refresh failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: period)
        }
    }
}

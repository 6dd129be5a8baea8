import NIOCore
import RedisClient
import Synchronization

/// Presence on Redis: each room's members in a hash (`RedisKeys.presence`), a field per node and
/// member, changed with the room's channel carrying the new entry to every node; and a sorted set
/// of the nodes that write them (`RedisKeys.presenceNodes`), each scored with the time it stops
/// being alive unless it refreshes. A node that dies stops refreshing: within `presenceTTL` (and
/// a third more, the refresh period) every other node sees it gone and its members leave. Only
/// entries of nodes marked alive are counted; those of nodes gone for an hour, or forgotten (a
/// day), are deleted by whoever reads them.
extension RedisBroker {
    /// How long a room's presence hash outlives its last change (a node stores its entries
    /// again when it finds its mark lost, and every hour).
    static let presenceHashTTL = 24 * 3600

    /// One round trip per hash slot (one in all on a single Redis): per entry, the hash's field set
    /// or deleted, its expiry renewed, and the entry published on the room's channel.
    public func updatePresence(_ entries: [PresenceEntry]) async throws {
        if !presenceMarked.load(ordering: .relaxed) {
            // Marked before the first entry: a reader counts only entries of nodes marked alive.
            _ = try await markAlive()
            presenceMarked.store(true, ordering: .relaxed)
        }
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
        guard let fields = reply.pairs else { throw BrokerError.unavailable("unexpected reply to HGETALL: \(reply)") }
        let read: [(field: [UInt8], entry: PresenceEntry)] = fields.compactMap { field, value in
            guard let field = field.bytes, let entry = value.bytes.flatMap(PresenceEntry.init(json:)) else { return nil }
            return (field, entry)
        }
        var marks = presenceMarks.withLock { $0 }
        if read.contains(where: { marks.state(of: $0.entry.node) == .unknown }) {
            // A node that started since the last refresh: read the marks again.
            marks = (try? await readPresenceMarks()) ?? marks
        }
        var entries: [PresenceEntry] = []
        var stale: [RedisArgument] = []
        for (field, entry) in read {
            switch marks.state(of: entry.node) {
            case .alive: entries.append(entry)
            case .gone: break
            // Gone for an hour, or forgotten: no node comes back after that with these entries
            // (one whose mark ran out stores its entries again as soon as it marks itself).
            case .longGone, .unknown: stale.append(RedisArgument(field))
            }
        }
        if !stale.isEmpty {
            _ = try? await call(["HDEL", RedisArgument(keys.presence(room))] + stale, slot: keys.slot(room))
        }
        return entries
    }

    /// Every node's mark in `presence-nodes`, as last read.
    struct PresenceMarks: Sendable {
        /// When each node's mark runs out (ms since the epoch).
        var expiries: [String: UInt64] = [:]
        /// When they were read (ms since the epoch).
        var readAt: UInt64 = 0

        enum NodeState { case alive, gone, longGone, unknown }

        func state(of node: String) -> NodeState {
            guard let expiry = expiries[node] else { return .unknown }
            if expiry >= readAt { return .alive }
            return readAt - expiry > 3_600_000 ? .longGone : .gone
        }

        /// The nodes whose marks had run out when read.
        var gone: Set<String> { Set(expiries.filter { $0.value < readAt }.keys) }
    }

    /// Reads every node's mark, and keeps them for `presence(room:)`.
    @discardableResult
    func readPresenceMarks() async throws -> PresenceMarks {
        let key = keys.presenceNodes
        let reply = try await call(["ZRANGE", RedisArgument(key), "0", "-1", "WITHSCORES"], slot: RedisKeySlot.of(key))
        var marks = PresenceMarks(readAt: Timestamp.nowMilliseconds())
        for (node, score) in reply.pairs ?? [] {
            guard let node = node.bytes, let score = score.bytes.flatMap({ Double(String(decoding: $0, as: UTF8.self)) }) else { continue }
            marks.expiries[String(decoding: node, as: UTF8.self)] = UInt64(clamping: score)
        }
        presenceMarks.withLock { $0 = marks }
        return marks
    }

    /// Marks this node alive until a TTL from now; returns whether its mark was missing (Redis
    /// lost it) or had run out (the others took it for gone): its entries must then be stored again.
    func markAlive() async throws -> Bool {
        let key = keys.presenceNodes
        let now = Timestamp.nowMilliseconds()
        let replies = try await pipeline(
            [
                ["ZSCORE", RedisArgument(key), RedisArgument(sink.presence.node)],
                [
                    "ZADD", RedisArgument(key), RedisArgument(String(now + UInt64(presenceTTL.wholeMilliseconds))),
                    RedisArgument(sink.presence.node),
                ],
                // Nodes gone for a day are forgotten.
                ["ZREMRANGEBYSCORE", RedisArgument(key), "-inf", RedisArgument(String(now - min(now, 86_400_000)))],
            ], slot: RedisKeySlot.of(key))
        let score = replies[0].bytes.flatMap { Double(String(decoding: $0, as: UTF8.self)) }
        return score.map { $0 < Double(now) } ?? true
    }

    /// Until cancelled, every third of `presenceTTL`: marks this node alive, reads every node's
    /// mark, reports the nodes whose marks ran out (their members leave every view), reads the
    /// rooms followed here again when a node taken for gone came back, and stores this node's
    /// entries again when its own mark was missing or had run out, and every hour.
    func keepPresenceAlive() async {
        let book = sink.presence
        let period = presenceTTL / 3
        var marked = false
        var lastStored = ContinuousClock.now
        var known = Set<String>()
        while !Task.isCancelled {
            do {
                let lost = try await markAlive()
                presenceMarked.store(true, ordering: .relaxed)
                let gone = try await readPresenceMarks().gone
                let newlyGone = gone.subtracting(known)
                let back = known.subtracting(gone)
                known = gone
                if !newlyGone.isEmpty {
                    logger.info("presence nodes gone", metadata: ["nodes": "\(newlyGone.sorted())"])
                    book.nodesGone(newlyGone)
                }
                if !back.isEmpty {
                    // Their members left the views here: read the rooms again.
                    logger.info("presence nodes back", metadata: ["nodes": "\(back.sorted())"])
                    await resyncPresence { _ in true }
                }
                if (marked && lost) || ContinuousClock.now - lastStored > .seconds(3600) {
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

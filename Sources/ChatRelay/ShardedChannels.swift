import NIOCore
import RedisClient
import Synchronization

/// On a Redis Cluster, the room channels one event loop owns: one sharded subscriber
/// (`SSUBSCRIBE`) per master serving one of them, made when first needed. A room's channel is held
/// by the subscriber of the master that serves its slot, which is the only node its events are
/// published on (`SPUBLISH`).
///
/// When a slot moves, its channels move with it: after a resharding the old master drops them
/// (the subscriber reports them, `moved(_:from:)`); after a failover the slot map names a new
/// master (`mapChanged(_:)`), and the dead master's subscriber is given up. Either way the new
/// master's subscriber adopts the channels and subscribes again with a gap fill, so a stream loses
/// nothing that was published meanwhile.
final class ShardedChannels: Sendable {
    /// The event loop (its index in the group) whose rooms these are.
    let index: Int
    /// The loop's cluster client: the slot map these channels follow.
    let client: RedisClusterClient
    private let makeSubscriber: @Sendable (RedisSlotMap.Node) -> RedisSubscriber

    private struct State {
        var subscribers: [RedisSlotMap.Node: RedisSubscriber] = [:]
        var stopped = false
    }
    private let state = Mutex(State())

    /// - Parameter makeSubscriber: a sharded subscriber for a master, not yet started.
    init(index: Int, client: RedisClusterClient, makeSubscriber: @escaping @Sendable (RedisSlotMap.Node) -> RedisSubscriber) {
        self.index = index
        self.client = client
        self.makeSubscriber = makeSubscriber
    }

    /// The masters that have a subscriber here, and whether it is subscribed.
    var shards: [(node: RedisSlotMap.Node, subscribed: Bool)] {
        state.withLock { $0.subscribers.map { ($0.key, $0.value.isSubscribed) } }
    }

    /// Whether every subscriber is subscribed (none: nothing to hear yet, which is up).
    var allSubscribed: Bool { state.withLock { $0.subscribers.values.allSatisfy(\.isSubscribed) } }

    /// Stops every subscriber; `listen` fails from now on.
    func stop() {
        let subscribers = state.withLock { state in
            state.stopped = true
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.stop() }
    }

    /// Subscribes `channel` (of `slot`) on the master serving the slot, and returns once the
    /// master confirmed it (or at once while that subscriber is reconnecting: its gap fill covers
    /// the channel). A refusal (the slot moved) is followed for a few seconds.
    func listen(_ channel: String, slot: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while true {
            do {
                let master: RedisSlotMap.Node
                if let known = client.slotMap?.master(of: slot) {
                    master = known
                } else if let read = try await client.refreshSlotMap().master(of: slot) {
                    master = read
                } else {
                    throw RedisError.server("CLUSTERDOWN: no master serves slot \(slot)")
                }
                try await subscriber(for: master).listen(channel).get()
                return
            } catch {
                guard ContinuousClock.now < deadline, !isStopped else { throw error }
                // Refused with MOVED (the subscriber reported it, and `moved` takes it over), or
                // no map yet: ask the cluster again.
                _ = try? await client.refreshSlotMap()
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// The subscriber of `node` dropped or refused `channel`: its slot is served elsewhere now.
    func moved(_ channel: String, from node: RedisSlotMap.Node) {
        Task { await move([channel], from: node) }
    }

    /// The slot map changed: the channels of every subscriber whose master serves nothing any
    /// more (it died and a replica took over) go to the masters that serve their slots now.
    func mapChanged(_ map: RedisSlotMap) {
        let orphaned = state.withLock { state in
            let nodes = state.subscribers.keys.filter { !map.masters.contains($0) }
            return nodes.compactMap { node in state.subscribers.removeValue(forKey: node).map { (node, $0) } }
        }
        guard !orphaned.isEmpty else { return }
        Task {
            for (node, subscriber) in orphaned {
                let channels = (try? await subscriber.release(nil).get()) ?? []
                subscriber.stop()
                await adopt(channels)
            }
        }
    }

    // MARK: Helpers

    private var isStopped: Bool { state.withLock { $0.stopped } }

    /// The subscriber of `node`, made and started the first time.
    private func subscriber(for node: RedisSlotMap.Node) throws -> RedisSubscriber {
        let (subscriber, isNew) = try state.withLock { state throws(RedisError) -> (RedisSubscriber, Bool) in
            guard !state.stopped else { throw .notConnected("the broker is stopped") }
            if let existing = state.subscribers[node] { return (existing, false) }
            let made = makeSubscriber(node)
            state.subscribers[node] = made
            return (made, true)
        }
        if isNew { subscriber.start() }
        return subscriber
    }

    /// Moves `channels` from the subscriber of `node` to the masters that serve their slots,
    /// once the slot map says where (it is read again until it no longer names `node`, for a few
    /// seconds: a MOVED may come before the map shows it).
    private func move(_ channels: [String], from node: RedisSlotMap.Node) async {
        for _ in 0..<20 {
            if let map = try? await client.refreshSlotMap(),
                channels.allSatisfy({ map.master(of: RedisKeySlot.of($0)).map { $0 != node } ?? false })
            {
                break
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        let holder = state.withLock { $0.subscribers[node] }
        let released = (try? await holder?.release(channels).get()) ?? channels
        await adopt(released)
    }

    /// Hands each channel to the subscriber of the master serving its slot; channels of slots no
    /// master serves yet (the cluster is failing over) wait for the map to name one.
    private func adopt(_ channels: [String]) async {
        var waiting = channels
        while !waiting.isEmpty, !isStopped {
            if let map = client.slotMap {
                let byMaster = Dictionary(grouping: waiting) { map.master(of: RedisKeySlot.of($0)) }
                waiting = byMaster[nil] ?? []
                for case (let master?, let group) in byMaster {
                    guard let subscriber = try? subscriber(for: master) else { return }
                    subscriber.adopt(group)
                }
            }
            guard !waiting.isEmpty else { return }
            try? await Task.sleep(for: .milliseconds(250))
            _ = try? await client.refreshSlotMap()
        }
    }
}

/// Every event loop's `ShardedChannels`, in the group's order, once `RedisBroker.run()` made them:
/// shared with the callbacks of the cluster clients, which are made before.
final class ShardedChannelsTable: Sendable {
    private let loops = Mutex<[ShardedChannels]>([])

    func set(_ channels: [ShardedChannels]) {
        loops.withLock { $0 = channels }
    }

    /// The channels of event loop `index`, if made.
    subscript(index: Int) -> ShardedChannels? {
        loops.withLock { $0.indices.contains(index) ? $0[index] : nil }
    }
}

import RedisClient

extension RedisBroker {
    /// On a Redis Cluster, until cancelled: every 250 ms, reads the slot map again wherever a
    /// master cannot be reached or a subscriber is down (a failover: nothing else would tell
    /// while no command runs), and keeps readiness, `chat_relay_broker_up` and each shard's
    /// `chat_relay_redis_shard_up` true to what the event loops reach.
    func watchCluster(_ loops: [ShardedChannels]) async {
        var wasUp: Bool? = nil
        var reported: Set<RedisSlotMap.Node> = []
        while !Task.isCancelled {
            for owned in loops where owned.client.slotMap == nil || !owned.client.mastersConnected || !owned.allSubscribed {
                _ = try? await owned.client.refreshSlotMap()
            }
            // A shard is up when every loop reaches its master and every loop's subscriber there
            // is subscribed.
            var shards: [RedisSlotMap.Node: Bool] = [:]
            var up = true
            for owned in loops {
                if owned.client.slotMap == nil { up = false }
                for (node, connected) in owned.client.masterConnections {
                    shards[node] = (shards[node] ?? true) && connected
                }
                for (node, subscribed) in owned.shards where shards[node] != nil {
                    shards[node] = shards[node]! && subscribed
                }
            }
            up = up && !shards.isEmpty && shards.values.allSatisfy { $0 }
            for (node, shardUp) in shards { metrics.redisShardUp(node.description).record(shardUp ? 1 : 0) }
            for gone in reported.subtracting(shards.keys) { metrics.redisShardUp(gone.description).record(0) }
            reported = Set(shards.keys)
            if up != wasUp {
                setClusterUp(up)
                if up {
                    logger.info("redis cluster reachable", metadata: ["masters": "\(shards.keys.map(\.description).sorted())"])
                    if wasUp == false { metrics.brokerReconnects.increment() }
                } else if wasUp == true {
                    let down = shards.filter { !$0.value }.keys.map(\.description).sorted()
                    logger.warning("redis cluster not reachable", metadata: ["shards down": "\(down)"])
                }
                wasUp = up
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        setClusterUp(false)
    }
}

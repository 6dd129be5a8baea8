import ChatRelay
import Logging
import ServiceLifecycle

/// Runs the broker's connections for as long as the application runs.
struct BrokerService: Service {
    let broker: any Broker
    let metrics: RelayMetrics

    func run() async throws {
        metrics.brokerUp.record(broker.isReady ? 1 : 0)
        try await cancelWhenGracefulShutdown {
            try await broker.run()
        }
    }
}

/// Marks heartbeats due on idle streams.
struct HeartbeatService: Service {
    let hub: Hub
    let interval: Duration

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await hub.runHeartbeats(interval: interval)
        }
    }
}

/// Hands this node's presence changes to the broker, in batches and in order, and sends each
/// room's coalesced changes to its streams every `presenceInterval`.
struct PresenceService: Service {
    let node: RelayNode

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await node.hub.runPresenceFlushes(interval: node.configuration.presenceInterval) }
                group.addTask {
                    for await _ in node.presenceUpdates.doorbell {
                        while true {
                            let batch = node.presenceUpdates.take()
                            if batch.isEmpty { break }
                            do {
                                try await node.broker.updatePresence(batch)
                                node.metrics.presenceSignals.increment(by: Int64(batch.count))
                            } catch {
                                // Stored again when the node finds its presence mark lost.
                                node.logger.warning(
                                    "presence changes not stored", metadata: ["changes": "\(batch.count)", "error": "\(error)"])
                            }
                        }
                    }
                }
                await group.waitForAll()
            }
        }
    }
}

/// Waits for the shutdown signal, then drains the node's streams before the server stops.
struct DrainService: Service {
    let hub: Hub
    let configuration: RelayConfiguration
    let logger: Logger

    func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            return  // cancelled: the node is stopping without a drain
        }
        let streams = hub.connectionCount
        logger.info("draining", metadata: ["streams": "\(streams)", "spread": "\(configuration.drainSpread)"])
        let start = ContinuousClock.now
        await hub.drain(
            spread: configuration.drainSpread,
            retry: configuration.drainRetryMilliseconds,
            deadline: configuration.drainTimeout * 0.8
        )
        logger.info("drained", metadata: ["remaining": "\(hub.connectionCount)", "took": "\(ContinuousClock.now - start)"])
    }
}

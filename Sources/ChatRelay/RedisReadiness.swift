import Metrics
import NIOCore
import Synchronization

/// Whether the broker's connections are up: it is up when every command connection and every
/// subscription (one of each per event loop) is.
final class RedisReadiness: Sendable {
    private struct Flags {
        /// The loops whose command connection, and whose subscription, is up.
        var commandConnectionsUp: Set<ObjectIdentifier> = []
        var subscriptionsUp: Set<ObjectIdentifier> = []
    }
    private let flags = Mutex(Flags())
    private let connections: Int

    init(connections: Int) {
        self.connections = connections
    }

    var isUp: Bool { flags.withLock { isUp($0) } }

    /// Records the command connection of `loop` coming up or going down; true when it was the
    /// last to come up.
    @discardableResult
    func commandConnection(of loop: any EventLoop, up: Bool, _ metrics: RelayMetrics) -> Bool {
        mark(\.commandConnectionsUp, loop, up, metrics)
    }

    /// Records the subscription of `loop` coming up or going down; true when it was the last to
    /// come up.
    @discardableResult
    func subscription(of loop: any EventLoop, up: Bool, _ metrics: RelayMetrics) -> Bool {
        mark(\.subscriptionsUp, loop, up, metrics)
    }

    /// Marks `loop` up or down in `kind`; true when it was the last of its kind to come up.
    private func mark(
        _ kind: WritableKeyPath<Flags, Set<ObjectIdentifier>>, _ loop: any EventLoop, _ up: Bool,
        _ metrics: RelayMetrics
    ) -> Bool {
        let (lastUp, allUp) = flags.withLock { flags in
            if up {
                flags[keyPath: kind].insert(ObjectIdentifier(loop))
            } else {
                flags[keyPath: kind].remove(ObjectIdentifier(loop))
            }
            return (up && flags[keyPath: kind].count == connections, isUp(flags))
        }
        metrics.brokerUp.record(allUp ? 1 : 0)
        return lastUp
    }

    private func isUp(_ flags: Flags) -> Bool {
        flags.commandConnectionsUp.count == connections && flags.subscriptionsUp.count == connections
    }
}

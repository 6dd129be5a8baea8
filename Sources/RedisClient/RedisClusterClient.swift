import NIOCore
import NIOPosix
import Synchronization

/// Commands to a Redis Cluster from one event loop. A pipeline whose keys share one slot goes to
/// the master serving that slot, over a connection of its own on the loop (a `RedisClient` per
/// master, made when first needed), and follows the cluster as it changes:
///
/// - `MOVED`: the slot lives elsewhere now. The command goes there, and the slot map is read
///   again (`CLUSTER SLOTS`), at most every `refreshInterval`.
/// - `ASK`: the slot is being migrated and this key already went. The command goes there once,
///   after `ASKING`; the map stays as it is until the migration ends with a `MOVED`.
/// - `TRYAGAIN`: a command on several keys of a migrating slot, some moved and some not: asked
///   again shortly. `CLUSTERDOWN` (a master was marked failed and no replica has taken over yet,
///   or a starved node missed its pings): asked again shortly too, with the slot map read again,
///   until `failoverPatience` has passed.
/// - A master that cannot be reached (it died and a replica is being promoted): the slot map is
///   read again and the pipeline retried until `failoverPatience` has passed.
///
/// Each command of a pipeline is followed on its own: during a migration one key may be answered
/// by the old node and the next by the new one.
public final class RedisClusterClient: Sendable {
    public struct Configuration: Sendable {
        /// Nodes to read the slot map from first, with the credentials every node takes.
        public var seeds: [RedisURL]
        /// Redirections followed for one command before its last redirection is returned as its reply.
        public var maxRedirects = 5
        /// How long a pipeline is retried while its master cannot be reached.
        public var failoverPatience: Duration = .seconds(5)
        /// The least time between two readings of the slot map.
        public var refreshInterval: Duration = .milliseconds(250)
        public var connectTimeout: Duration = .seconds(1)
        public var commandTimeout: Duration = .seconds(2)

        public init(seeds: [RedisURL]) {
            self.seeds = seeds
        }
    }

    public let configuration: Configuration
    public let eventLoop: any EventLoop
    private let onMapChange: @Sendable (RedisSlotMap) -> Void
    private let onRoundTrip: @Sendable (_ requests: Int, _ commands: Int) -> Void
    private let onRedirect: @Sendable (RedisRedirect.Kind) -> Void
    private let onRefresh: @Sendable () -> Void

    private struct State {
        var map: RedisSlotMap?
        var clients: [RedisSlotMap.Node: RedisClient] = [:]
        var lastRefresh: ContinuousClock.Instant?
        var stopped = false
    }
    private let state = Mutex(State())

    /// - Parameters:
    ///   - onMapChange: the slot map was read and differs from the one before (a failover, a
    ///     resharding): for a subscriber to follow its channels.
    ///   - onRoundTrip: each node connection's round trips, as `RedisClient` reports them.
    ///   - onRedirect: a command was redirected (`MOVED` or `ASK`).
    ///   - onRefresh: the slot map was read (changed or not).
    public init(
        configuration: Configuration, eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next(),
        onMapChange: @escaping @Sendable (RedisSlotMap) -> Void = { _ in },
        onRoundTrip: @escaping @Sendable (_ requests: Int, _ commands: Int) -> Void = { _, _ in },
        onRedirect: @escaping @Sendable (RedisRedirect.Kind) -> Void = { _ in },
        onRefresh: @escaping @Sendable () -> Void = {}
    ) {
        precondition(!configuration.seeds.isEmpty, "a cluster client needs at least one seed")
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.onMapChange = onMapChange
        self.onRoundTrip = onRoundTrip
        self.onRedirect = onRedirect
        self.onRefresh = onRefresh
    }

    /// The slot map as last read, if it was.
    public var slotMap: RedisSlotMap? { state.withLock { $0.map } }

    /// Closes every connection; pipelines from now on fail.
    public func stop() {
        let clients = state.withLock { state in
            state.stopped = true
            defer { state.clients = [:] }
            return Array(state.clients.values)
        }
        for client in clients { client.stop() }
    }

    /// Whether every master of the slot map has its connection up now.
    public var mastersConnected: Bool {
        slotMap != nil && masterConnections.allSatisfy(\.connected)
    }

    /// Each master of the slot map, and whether its connection is up.
    public var masterConnections: [(node: RedisSlotMap.Node, connected: Bool)] {
        state.withLock { state in
            (state.map?.masters ?? []).map { ($0, state.clients[$0]?.isConnected ?? false) }
        }
    }

    // MARK: Commands

    /// Sends `commands`, whose keys are all in `slot`, to the master serving it, and returns their
    /// replies in order (error replies included, as `RedisClient.pipeline` does).
    /// - Throws: ``RedisError`` when no master of the slot could be reached within `failoverPatience`.
    public func pipeline(_ commands: [RedisCommand], slot: Int) async throws -> [RedisReply] {
        var replies = [RedisReply?](repeating: nil, count: commands.count)
        var pending = Array(commands.indices)
        var target: (node: RedisSlotMap.Node, asking: Bool)? = nil
        var redirects = 0
        let deadline = ContinuousClock.now + configuration.failoverPatience
        while !pending.isEmpty {
            let (node, asking): (RedisSlotMap.Node, Bool)
            if let redirected = target {
                (node, asking) = redirected
            } else {
                (node, asking) = (try await master(of: slot, deadline: deadline), false)
            }
            target = nil
            let sent = asking ? pending.flatMap { [["ASKING"], commands[$0]] } : pending.map { commands[$0] }
            let answers: [RedisReply]
            do {
                answers = try await client(for: node).pipeline(sent)
            } catch let error as RedisError {
                // The master is gone or going: read the map again and retry, for a while.
                guard ContinuousClock.now < deadline, !isStopped else { throw error }
                _ = try? await refreshSlotMap()
                try await Task.sleep(for: .milliseconds(50))
                continue
            }
            let own = asking ? stride(from: 1, to: answers.count, by: 2).map { answers[$0] } : answers
            var stillPending: [Int] = []
            // How long to wait before asking again (TRYAGAIN, CLUSTERDOWN), if anything must be.
            var pause: Duration?
            for (index, reply) in zip(pending, own) {
                if let redirect = RedisRedirect(reply), redirects < configuration.maxRedirects {
                    stillPending.append(index)
                    let next = RedisSlotMap.Node(host: redirect.host.isEmpty ? node.host : redirect.host, port: redirect.port)
                    if target == nil { target = (next, redirect.kind == .ask) }
                    onRedirect(redirect.kind)
                    if redirect.kind == .moved { scheduleRefresh() }
                } else if case .error(let message) = reply, message.hasPrefix("TRYAGAIN") || message.hasPrefix("CLUSTERDOWN"),
                    ContinuousClock.now < deadline
                {
                    stillPending.append(index)
                    if message.hasPrefix("CLUSTERDOWN") {
                        // The cluster lost a master and has not promoted its replica yet: the
                        // map will change, and it takes a while.
                        pause = .milliseconds(100)
                        scheduleRefresh()
                    } else {
                        pause = max(pause ?? .zero, .milliseconds(25))
                    }
                } else {
                    replies[index] = reply
                }
            }
            if stillPending.count == pending.count { redirects += 1 }
            pending = stillPending
            if let pause, target == nil { try await Task.sleep(for: pause) }
        }
        // Every command got its reply: a pipeline answers each of what it sent, and a command is
        // pending until it has one. A reply missing all the same is a failed command, not a trap.
        return replies.map { $0 ?? .error("ERR no reply from the cluster") }
    }

    /// One command about keys of `slot`.
    public func command(_ command: RedisCommand, slot: Int) async throws -> RedisReply {
        try await pipeline([command], slot: slot)[0]
    }

    /// Reads the slot map again from the nodes it knows (the masters, then the seeds) and returns
    /// it; at most once per `refreshInterval` (a call within it returns the map as it is).
    @discardableResult
    public func refreshSlotMap() async throws -> RedisSlotMap {
        let now = ContinuousClock.now
        let (due, current, known) = state.withLock { state in
            let due = state.lastRefresh.map { now - $0 >= configuration.refreshInterval } ?? true
            if due { state.lastRefresh = now }
            return (due, state.map, state.map?.masters ?? [])
        }
        if !due, let current { return current }
        var lastError: any Error = RedisError.notConnected("no node of the cluster answered")
        let seeds = configuration.seeds.map { RedisSlotMap.Node(host: $0.host, port: $0.port) }
        for node in known + seeds.filter({ !known.contains($0) }) {
            do {
                let reply = try await client(for: node).command(["CLUSTER", "SLOTS"])
                if case .error(let message) = reply { throw RedisError.server(message) }
                let map = try RedisSlotMap(clusterSlots: reply, answeredBy: node)
                guard !map.shards.isEmpty else { throw RedisError.server("CLUSTER SLOTS: no slot is served") }
                let changed = state.withLock { state in
                    defer { state.map = map }
                    return state.map != map
                }
                onRefresh()
                if changed {
                    // A connection to every master from now on, so `mastersConnected` says
                    // whether each shard can be reached before a command needs it; none to a
                    // node that serves nothing any more (a dead master keeps being retried).
                    for master in map.masters { _ = try? client(for: master) }
                    let gone = state.withLock { state in
                        let nodes = state.clients.keys.filter { !map.masters.contains($0) }
                        return nodes.compactMap { state.clients.removeValue(forKey: $0) }
                    }
                    for client in gone { client.stop() }
                    onMapChange(map)
                }
                return map
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    // MARK: Helpers

    private var isStopped: Bool { state.withLock { $0.stopped } }

    /// The master of `slot`, reading the slot map first if there is none or it has no master for
    /// the slot (retrying until `deadline`).
    private func master(of slot: Int, deadline: ContinuousClock.Instant) async throws -> RedisSlotMap.Node {
        while true {
            if let master = slotMap?.master(of: slot) { return master }
            do {
                if let master = try await refreshSlotMap().master(of: slot) { return master }
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
            }
            guard ContinuousClock.now < deadline else { throw RedisError.server("CLUSTERDOWN: no master serves slot \(slot)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Reads the map again soon, without making the caller wait.
    private func scheduleRefresh() {
        Task { _ = try? await self.refreshSlotMap() }
    }

    /// The connection to `node`, made and started the first time.
    private func client(for node: RedisSlotMap.Node) throws -> RedisClient {
        let (client, isNew) = try state.withLock { state throws(RedisError) -> (RedisClient, Bool) in
            guard !state.stopped else { throw .notConnected("the cluster client is stopped") }
            if let existing = state.clients[node] { return (existing, false) }
            var clientConfiguration = RedisClient.Configuration(url: node.url(credentialsOf: configuration.seeds[0]))
            clientConfiguration.connectTimeout = configuration.connectTimeout
            clientConfiguration.commandTimeout = configuration.commandTimeout
            let client = RedisClient(configuration: clientConfiguration, eventLoop: eventLoop, onRoundTrip: onRoundTrip)
            state.clients[node] = client
            return (client, true)
        }
        if isNew { client.start() }
        return client
    }
}

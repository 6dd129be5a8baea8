import Foundation

/// A real Redis Cluster on loopback for one test: `masters` masters with `replicasPerMaster`
/// replicas each, every one a `RedisServer` (its own port and data directory) with cluster mode
/// on, joined by `redis-cli --cluster create`, and ready once every node reports every slot
/// served. A short `cluster-node-timeout`, set once the nodes have met, lets a failover happen
/// within seconds.
public final class RedisCluster: Sendable {
    public let servers: [RedisServer]

    /// `redis://` of one node: a seed a client learns the whole cluster from.
    public var seedURL: String { servers[0].url }

    /// - Parameter durable: every server keeps an fsync-always append-only file, so the whole
    ///   cluster can be killed and started again losing nothing acknowledged (only the tests that
    ///   do that ask: six fsync-per-write servers slow a busy machine's disk for the others).
    public init(masters: Int = 3, replicasPerMaster: Int = 1, nodeTimeoutMilliseconds: Int = 1000, durable: Bool = false) async throws {
        var failures: [String] = []
        // A cluster that does not come together is made again on fresh ports, once: on a machine
        // busy with other suites a join can stall where a second one goes through.
        for _ in 0..<2 {
            let servers = try await Self.startServers(count: masters * (1 + replicasPerMaster), durable: durable)
            do {
                try await Self.join(servers, masters: masters, replicasPerMaster: replicasPerMaster)
                // Joined with a long node timeout; now the short one the failover tests want.
                for server in servers {
                    _ = try await Self.cli(server, ["CONFIG", "SET", "cluster-node-timeout", "\(nodeTimeoutMilliseconds)"])
                }
                self.servers = servers
                return
            } catch {
                failures.append("\(error)")
                for server in servers { server.killNow() }
            }
        }
        throw RelayProcessError.notReady(log: "the Redis Cluster did not come together:\n" + failures.joined(separator: "\n---\n"))
    }

    private static func startServers(count: Int, durable: Bool) async throws -> [RedisServer] {
        var servers: [RedisServer] = []
        for _ in 0..<count {
            servers.append(
                try await RedisServer(
                    // A failover keeps what the replica has, not what is on the dead master's
                    // disk: only a whole-cluster restart needs the append-only file.
                    appendOnly: durable,
                    arguments: [
                        "--cluster-enabled", "yes",
                        // Long while the nodes meet: a node still in handshake after the node
                        // timeout is forgotten, and on a loaded machine 1 s can pass before its
                        // first PONG, leaving it out of the cluster for good.
                        "--cluster-node-timeout", "15000",
                        // A replica syncs at once, not after Redis's 5 s of waiting for others.
                        "--repl-diskless-sync-delay", "0",
                    ],
                    // The cluster bus listens 10 000 above the port.
                    port: freeLoopbackPort(withCompanionAt: 10_000)))
        }
        return servers
    }

    /// `redis-cli --cluster create`, then waits until every node serves every slot, every replica
    /// is in sync and the first node's `CLUSTER SLOTS` names every server.
    private static func join(_ servers: [RedisServer], masters: Int, replicasPerMaster: Int) async throws {
        let create = try await ChildProcess.run(
            "/usr/bin/redis-cli",
            ["--cluster", "create"] + servers.map { "127.0.0.1:\($0.port)" } + [
                "--cluster-replicas", "\(replicasPerMaster)", "--cluster-yes",
            ],
            timeout: .seconds(40))
        guard create.status == 0 else {
            var nodes = ""
            for server in servers { nodes += "\(server.port): " + ((try? await cli(server, ["CLUSTER", "NODES"])) ?? "?") + "\n" }
            throw RelayProcessError.notReady(log: "redis-cli --cluster create failed: \(create.output)\(create.errors)\n\(nodes)")
        }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if await isHealthy(servers), await onlineReplicas(servers) == masters * replicasPerMaster,
                await nodesInSlotMap(servers[0]) == servers.count
            {
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw RelayProcessError.notReady(log: "the cluster did not become ready: \(try await cli(servers[0], ["CLUSTER", "INFO"]))")
    }

    /// `redis-cli` against `server`: its answer as text.
    public func cli(_ server: RedisServer, _ arguments: [String]) async throws -> String {
        try await Self.cli(server, arguments)
    }

    static func cli(_ server: RedisServer, _ arguments: [String]) async throws -> String {
        try await ChildProcess.run("/usr/bin/redis-cli", ["-p", "\(server.port)"] + arguments).output
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Whether every server sees the cluster as whole: state ok, every slot served.
    static func isHealthy(_ servers: [RedisServer]) async -> Bool {
        for server in servers {
            guard let info = try? await cli(server, ["CLUSTER", "INFO"]),
                info.contains("cluster_state:ok"), info.contains("cluster_slots_ok:16384")
            else { return false }
        }
        return true
    }

    /// Replicas in sync with their masters (`state=online` in the masters' `INFO replication`).
    static func onlineReplicas(_ servers: [RedisServer]) async -> Int {
        var count = 0
        for server in servers {
            let info = (try? await cli(server, ["INFO", "replication"])) ?? ""
            guard info.contains("role:master") else { continue }
            count += info.components(separatedBy: "state=online").count - 1
        }
        return count
    }

    /// The masters and replicas `server`'s `CLUSTER SLOTS` names (a replica shows once the
    /// server has heard, by gossip, that it is in sync).
    static func nodesInSlotMap(_ server: RedisServer) async -> Int {
        guard let slots = try? await cli(server, ["CLUSTER", "SLOTS"]) else { return -1 }
        return slots.split(separator: "\n").filter { $0 == "127.0.0.1" }.count
    }

    /// The servers that are masters now.
    public func masters() async throws -> [RedisServer] {
        var masters: [RedisServer] = []
        for server in servers {
            if try await cli(server, ["ROLE"]).hasPrefix("master") { masters.append(server) }
        }
        return masters
    }

    /// Waits until every server sees the cluster whole again and every replica is in sync (after
    /// servers were restarted).
    public func waitUntilHealthy(timeout: Duration = .seconds(30)) async -> Bool {
        let masters = (try? await masters().count) ?? 0
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await Self.isHealthy(servers), await Self.onlineReplicas(servers) == servers.count - masters { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// Kills every server without waiting: for `defer` at the end of a test.
    public func killNow() {
        for server in servers { server.killNow() }
    }
}

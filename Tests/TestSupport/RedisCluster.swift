import Foundation

/// A real Redis Cluster on loopback for one test: `masters` masters with `replicasPerMaster`
/// replicas each, every one a `RedisServer` (its own port and data directory) with cluster mode
/// on, joined by `redis-cli --cluster create`, and ready once every node reports every slot
/// served. A short `cluster-node-timeout` lets a failover happen within seconds.
public final class RedisCluster: Sendable {
    public let servers: [RedisServer]

    /// `redis://` of one node: a seed a client learns the whole cluster from.
    public var seedURL: String { servers[0].url }

    public init(masters: Int = 3, replicasPerMaster: Int = 1, nodeTimeoutMilliseconds: Int = 1000) async throws {
        var servers: [RedisServer] = []
        for _ in 0..<(masters * (1 + replicasPerMaster)) {
            servers.append(
                try await RedisServer(
                    appendOnly: false,
                    arguments: [
                        // What a cluster whose masters fail over runs: an append-only file written
                        // every second (fsync on every write, six times over, weighs on the machine).
                        "--appendonly", "yes", "--appendfsync", "everysec",
                        "--cluster-enabled", "yes", "--cluster-node-timeout", "\(nodeTimeoutMilliseconds)",
                        // A replica syncs at once, not after Redis's 5 s of waiting for others.
                        "--repl-diskless-sync-delay", "0",
                    ],
                    // The cluster bus listens 10 000 above the port.
                    port: freeLoopbackPort(withCompanionAt: 10_000)))
        }
        self.servers = servers
        let create = try ChildProcess.run(
            "/usr/bin/redis-cli",
            ["--cluster", "create"] + servers.map { "127.0.0.1:\($0.port)" } + [
                "--cluster-replicas", "\(replicasPerMaster)", "--cluster-yes",
            ])
        guard create.status == 0 else {
            throw RelayProcessError.notReady(log: "redis-cli --cluster create failed: \(create.output)\(create.errors)")
        }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if servers.allSatisfy({ Self.isHealthy($0) }), Self.onlineReplicas(servers) == masters * replicasPerMaster,
                Self.nodesInSlotMap(servers[0]) == servers.count
            {
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw RelayProcessError.notReady(log: "the cluster did not become ready: \(try cli(servers[0], ["CLUSTER", "INFO"]))")
    }

    /// `redis-cli` against `server`: its answer as text.
    public func cli(_ server: RedisServer, _ arguments: [String]) throws -> String {
        try Self.cli(server, arguments)
    }

    static func cli(_ server: RedisServer, _ arguments: [String]) throws -> String {
        try ChildProcess.run("/usr/bin/redis-cli", ["-p", "\(server.port)"] + arguments).output
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Whether `server` sees the cluster as whole: state ok, every slot served.
    static func isHealthy(_ server: RedisServer) -> Bool {
        guard let info = try? cli(server, ["CLUSTER", "INFO"]) else { return false }
        return info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
    }

    /// Replicas in sync with their masters (`state=online` in the masters' `INFO replication`).
    static func onlineReplicas(_ servers: [RedisServer]) -> Int {
        servers.reduce(0) { count, server in
            let info = (try? cli(server, ["INFO", "replication"])) ?? ""
            guard info.contains("role:master") else { return count }
            return count + info.components(separatedBy: "state=online").count - 1
        }
    }

    /// The masters and replicas `server`'s `CLUSTER SLOTS` names (a replica shows once the
    /// server has heard, by gossip, that it is in sync).
    static func nodesInSlotMap(_ server: RedisServer) -> Int {
        guard let slots = try? cli(server, ["CLUSTER", "SLOTS"]) else { return -1 }
        return slots.split(separator: "\n").filter { $0 == "127.0.0.1" }.count
    }

    /// The servers that are masters now.
    public func masters() throws -> [RedisServer] {
        try servers.filter { try cli($0, ["ROLE"]).hasPrefix("master") }
    }

    /// Kills every server without waiting: for `defer` at the end of a test.
    public func killNow() {
        for server in servers { server.killNow() }
    }
}

import RedisClient

/// Which Redis the broker runs on (`--redis-url`).
public enum RedisDeployment: Sendable, Equatable, CustomStringConvertible {
    /// One Redis (with replicas behind it or not): every command and channel on it.
    case standalone(RedisURL)
    /// A Redis Cluster, learnt from these seed nodes: each room's keys and channel on the master
    /// serving the room's hash slot.
    case cluster(seeds: [RedisURL])

    public var isCluster: Bool {
        if case .cluster = self { true } else { false }
    }

    /// Parses `--redis-url`: one `redis://` URL, or several separated by commas (a cluster's
    /// seeds), where every one after the first may be a bare `host:port` that takes the first's
    /// credentials. `cluster`: a single seed names a cluster too.
    public init(_ text: String, cluster: Bool = false) throws(RedisError) {
        let parts = text.split(separator: ",", omittingEmptySubsequences: true).map { MessageDraft.trimmed(String($0)) }
        guard let first = parts.first else { throw .invalidURL("no Redis address") }
        let head = try RedisURL(first)
        var seeds = [head]
        for part in parts.dropFirst() {
            if part.hasPrefix("redis://") {
                seeds.append(try RedisURL(part))
            } else {
                var seed = try RedisURL("redis://" + part)
                seed.user = head.user
                seed.password = head.password
                seeds.append(seed)
            }
        }
        if seeds.count > 1 || cluster {
            guard seeds.allSatisfy({ $0.database == 0 }) else {
                throw .invalidURL("a Redis Cluster has only database 0; drop the /\(seeds.first { $0.database != 0 }!.database)")
            }
            self = .cluster(seeds: seeds)
        } else {
            self = .standalone(head)
        }
    }

    /// The addresses, without passwords, for logs.
    public var description: String {
        switch self {
        case .standalone(let url): url.description
        case .cluster(let seeds): "cluster " + seeds.map(\.description).joined(separator: ",")
        }
    }
}

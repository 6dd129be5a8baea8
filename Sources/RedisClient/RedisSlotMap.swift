/// Which node of a Redis Cluster serves each of the 16 384 slots: read from `CLUSTER SLOTS`,
/// refreshed after a `MOVED` or a failover.
public struct RedisSlotMap: Sendable, Equatable {
    /// A node of the cluster, by the address the cluster gives for it.
    public struct Node: Sendable, Hashable, CustomStringConvertible {
        public let host: String
        public let port: Int
        /// The cluster's id for the node (40 hex characters), when the reply gives it.
        public let id: String?

        public init(host: String, port: Int, id: String? = nil) {
            self.host = host
            self.port = port
            self.id = id
        }

        public var description: String { "\(host):\(port)" }

        /// How to reach this node: `seed`'s credentials at its address (database 0, the only one
        /// a cluster has).
        public func url(credentialsOf seed: RedisURL) -> RedisURL {
            RedisURL(host: host, port: port, user: seed.user, password: seed.password, database: 0)
        }
    }

    /// A range of slots, its master and its replicas.
    public struct Shard: Sendable, Equatable {
        public let slots: ClosedRange<Int>
        public let master: Node
        public let replicas: [Node]
    }

    /// Sorted by first slot, not overlapping.
    public let shards: [Shard]
    /// For each slot, the index of its shard in `shards`, or -1 when no node serves it.
    private let owners: [Int16]

    public init(shards: [Shard]) {
        self.shards = shards.sorted { $0.slots.lowerBound < $1.slots.lowerBound }
        var owners = [Int16](repeating: -1, count: RedisKeySlot.count)
        for (index, shard) in self.shards.enumerated() {
            for slot in shard.slots { owners[slot] = Int16(index) }
        }
        self.owners = owners
    }

    /// Reads a `CLUSTER SLOTS` reply: one entry per slot range, `[first, last, master, replica…]`,
    /// each node `[host, port, id, …]`. An empty host means the node that answered (`answeredBy`).
    /// - Throws: ``RedisError/server(_:)`` when the reply is not of that shape.
    public init(clusterSlots reply: RedisReply, answeredBy: Node) throws {
        guard let entries = reply.array else { throw RedisError.server("CLUSTER SLOTS answered \(reply)") }
        var shards: [Shard] = []
        for entry in entries {
            guard let parts = entry.array, parts.count >= 3, let first = parts[0].integer, let last = parts[1].integer,
                0 <= first, first <= last, last < RedisKeySlot.count
            else { throw RedisError.server("CLUSTER SLOTS: unexpected entry \(entry)") }
            let nodes = try parts[2...].map { try Self.node($0, answeredBy: answeredBy) }
            shards.append(Shard(slots: Int(first)...Int(last), master: nodes[0], replicas: Array(nodes.dropFirst())))
        }
        self.init(shards: shards)
    }

    private static func node(_ reply: RedisReply, answeredBy: Node) throws -> Node {
        guard let parts = reply.array, parts.count >= 2, let host = parts[0].string, let port = parts[1].integer else {
            throw RedisError.server("CLUSTER SLOTS: unexpected node \(reply)")
        }
        let id = parts.count >= 3 ? parts[2].string : nil
        return Node(host: host.isEmpty || host == "?" ? answeredBy.host : host, port: Int(port), id: id)
    }

    /// The master serving `slot`, if any does.
    public func master(of slot: Int) -> Node? {
        let index = owners[slot]
        return index < 0 ? nil : shards[Int(index)].master
    }

    /// Every master, once, in slot order.
    public var masters: [Node] {
        var seen = Set<Node>()
        return shards.map(\.master).filter { seen.insert($0).inserted }
    }

    /// Whether every slot has a master.
    public var coversAllSlots: Bool { !owners.contains(-1) }
}

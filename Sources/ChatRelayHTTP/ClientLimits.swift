/// What one client may make a node hold or ask of it, on top of the node's totals: a client is
/// an address (as `--trusted-proxies` resolves it), a user is a token's `sub`. 0 turns a bound off.
public struct ClientLimits: Sendable, Equatable {
    /// Open streams of one client address (`--max-streams-per-client`).
    public var streamsPerClient = 100
    /// Open streams of one token `sub` (`--max-streams-per-user`), whatever their addresses.
    public var streamsPerUser = 20
    /// Open connections of any kind from one address (`--max-connections-per-client`); trusted
    /// proxies, whose connections carry many clients, are not counted.
    public var connectionsPerClient = 200
    /// Stream tickets one `sub` may be issued within `--ticket-ttl` (`--max-tickets-per-user`):
    /// at most that many of its tickets wait at once.
    public var ticketsPerUser = 30
    /// Requests per second of one client to what costs the node reads or work (stream opens,
    /// history, presence, tickets, sessions), and the burst it may take at once
    /// (`--request-rate-limit`, `--request-rate-burst`). A refused token takes from it too.
    public var requestRate: Double = 20
    public var requestBurst: Double = 100

    public init() {}

    /// No per-client bound at all: for load tests, where one address plays thousands of clients.
    public static let none: ClientLimits = {
        var limits = ClientLimits()
        limits.streamsPerClient = 0
        limits.streamsPerUser = 0
        limits.connectionsPerClient = 0
        limits.ticketsPerUser = 0
        limits.requestRate = 0
        return limits
    }()
}

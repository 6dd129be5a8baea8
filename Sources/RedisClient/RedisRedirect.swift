/// A Redis Cluster redirection: the error reply a node gives for a key whose slot it does not
/// serve. `MOVED`: the slot lives elsewhere for good (refresh the slot map, send there); `ASK`:
/// the slot is being migrated and this key already went (send it there once, after `ASKING`).
public struct RedisRedirect: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case moved
        case ask
    }

    public let kind: Kind
    public let slot: Int
    public let host: String
    public let port: Int

    /// Parses `MOVED <slot> <host>:<port>` or `ASK <slot> <host>:<port>` (an error reply's text);
    /// nil for any other error. The host may be an IPv6 address (the port is after the last colon),
    /// or empty when the node does not know its own address (then it is the node that answered).
    public init?(error message: String) {
        let parts = message.split(separator: " ")
        guard parts.count == 3, let slot = Int(parts[1]), (0..<RedisKeySlot.count).contains(slot),
            let colon = parts[2].lastIndex(of: ":"), let port = Int(parts[2][parts[2].index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        switch parts[0] {
        case "MOVED": kind = .moved
        case "ASK": kind = .ask
        default: return nil
        }
        self.slot = slot
        self.host = String(parts[2][..<colon])
        self.port = port
    }

    /// From an error reply, if it is a redirection.
    public init?(_ reply: RedisReply) {
        guard case .error(let message) = reply else { return nil }
        self.init(error: message)
    }
}

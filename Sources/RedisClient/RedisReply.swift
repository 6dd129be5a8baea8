/// A Redis reply, decoded from hiredis' reply tree into plain Swift values.
public indirect enum RedisReply: Sendable, Equatable, CustomStringConvertible {
    /// A bulk string: binary-safe bytes.
    case bulk([UInt8])
    /// A simple status such as `OK` or `PONG`.
    case status(String)
    case integer(Int64)
    case null
    case array([RedisReply])
    /// An error reply (`-ERR …`): the command failed, the connection is fine.
    case error(String)

    /// The reply as text: bulk strings (as UTF-8) and statuses; nil otherwise.
    public var string: String? {
        switch self {
        case .bulk(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let text): text
        default: nil
        }
    }

    public var integer: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    public var array: [RedisReply]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// An array of alternating fields and values (`HGETALL`, `ZRANGE … WITHSCORES`) as pairs; a
    /// last field without its value is left out.
    public var pairs: [(RedisReply, RedisReply)]? {
        guard let elements = array else { return nil }
        return stride(from: 0, to: elements.count - 1, by: 2).map { (elements[$0], elements[$0 + 1]) }
    }

    public var bytes: [UInt8]? {
        if case .bulk(let bytes) = self { return bytes }
        return nil
    }

    public var isNull: Bool { self == .null }

    public var description: String {
        switch self {
        case .bulk(let bytes): String(decoding: bytes, as: UTF8.self).debugDescription
        case .status(let text): text
        case .integer(let value): "(integer) \(value)"
        case .null: "(nil)"
        case .array(let elements): "[" + elements.map(\.description).joined(separator: ", ") + "]"
        case .error(let message): "(error) \(message)"
        }
    }
}

/// Why a Redis call failed.
public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Could not connect (refused, unreachable, timed out) or authenticate.
    case connectionFailed(String)
    /// The connection broke while the command was under way: it may or may not have run.
    case connectionLost(String)
    /// Not connected now (waiting to reconnect), so the command was not sent.
    case notConnected(String)
    /// The server answered with an error reply.
    case server(String)
    /// The URL is not `redis://[[user]:password@]host[:port][/db]`.
    case invalidURL(String)

    public var description: String {
        switch self {
        case .connectionFailed(let reason): "cannot connect to Redis: \(reason)"
        case .connectionLost(let reason): "connection to Redis lost: \(reason)"
        case .notConnected(let reason): "not connected to Redis: \(reason)"
        case .server(let message): "Redis error: \(message)"
        case .invalidURL(let reason): "invalid Redis URL: \(reason)"
        }
    }
}

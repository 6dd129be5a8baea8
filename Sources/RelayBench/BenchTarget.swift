/// One server the benchmark talks to: `http://host:port`, with the paths it subscribes and
/// publishes on.
public struct BenchTarget: Sendable, Hashable, CustomStringConvertible {
    public let host: String
    public let port: Int

    /// Parses `http://host[:port]` (a trailing `/` is allowed; HTTPS is not supported).
    public init?(url: String) {
        guard url.hasPrefix("http://") else { return nil }
        var rest = url.dropFirst("http://".count)
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.isEmpty, !rest.contains("/") else { return nil }
        if rest.hasPrefix("[") {
            // [IPv6]:port
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.isEmpty {
                port = 80
            } else {
                guard after.hasPrefix(":"), let parsed = Int(after.dropFirst()), (1...65535).contains(parsed) else { return nil }
                port = parsed
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            guard let parsed = Int(rest[rest.index(after: colon)...]), (1...65535).contains(parsed), !host.isEmpty else { return nil }
            port = parsed
        } else {
            host = String(rest)
            port = 80
        }
    }

    /// The `Host` header value.
    public var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == 80 ? name : "\(name):\(port)"
    }

    public var description: String { "http://\(hostHeader)" }
}

/// Which paths and message bodies a server speaks.
public struct BenchProtocol: Sendable, Equatable {
    /// The subscribe path; `{room}` is replaced by the room name.
    public var subscribePath: String
    /// The publish path; `{room}` is replaced by the room name.
    public var publishPath: String

    /// chat-relay's API: `GET /rooms/{room}/events`, `POST /rooms/{room}/messages`.
    public static let relay = BenchProtocol(subscribePath: "/rooms/{room}/events", publishPath: "/rooms/{room}/messages")
    /// The Nchan locations `benchmarks/vs-nchan.sh` configures: `/sub/{room}` and `/pub/{room}`.
    public static let nchan = BenchProtocol(subscribePath: "/sub/{room}", publishPath: "/pub/{room}")

    public init(subscribePath: String, publishPath: String) {
        self.subscribePath = subscribePath
        self.publishPath = publishPath
    }

    func subscribe(room: String) -> String { subscribePath.replacing("{room}", with: room) }
    func publish(room: String) -> String { publishPath.replacing("{room}", with: room) }
}

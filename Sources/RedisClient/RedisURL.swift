/// Where and how to connect: `redis://[[user]:password@]host[:port][/db]`.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String?
    public var password: String?
    public var database: Int

    public init(host: String, port: Int = 6379, user: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
    }

    /// Parses the URL; percent-escapes in the user and password are decoded.
    public init(_ text: String) throws(RedisError) {
        guard text.hasPrefix("redis://") else {
            throw .invalidURL("it must start with redis:// (got \(Self.redacted(text).debugDescription))")
        }
        var rest = Substring(text.dropFirst("redis://".count))
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = String(credentials[..<colon])
                self.user = user.isEmpty ? nil : try Self.percentDecoded(user)
                self.password = try Self.percentDecoded(String(credentials[credentials.index(after: colon)...]))
            } else {
                self.user = nil
                self.password = try Self.percentDecoded(String(credentials))
            }
        } else {
            user = nil
            password = nil
        }
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard let db = Int(path), db >= 0 else {
                    throw .invalidURL("the database must be a number (got \(String(path).debugDescription))")
                }
                database = db
            }
        }
        self.database = database
        var port = 6379
        var host = String(rest)
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {  // [::1]:6379
            let after = host[host.index(after: close)...]
            let address = String(host[host.index(after: host.startIndex)..<close])
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else {
                    throw .invalidURL("bad port in \(Self.redacted(text).debugDescription)")
                }
                port = p
            }
            host = address
        } else if let colon = host.lastIndex(of: ":") {
            guard let p = Int(host[host.index(after: colon)...]), (1...65535).contains(p) else {
                throw .invalidURL("bad port in \(Self.redacted(text).debugDescription)")
            }
            port = p
            host = String(host[..<colon])
        }
        guard !host.isEmpty else { throw .invalidURL("no host in \(Self.redacted(text).debugDescription)") }
        self.host = host
        self.port = port
    }

    /// The URL without the password, for logs.
    public var description: String {
        let credentials = password == nil ? "" : "\(user ?? ""):***@"
        return "redis://\(credentials)\(host.contains(":") ? "[\(host)]" : host):\(port)/\(database)"
    }

    /// `text` with whatever stands before its last `@` after the scheme (a user and password)
    /// as `***`: what an error may quote of a URL. A password never reaches a log or a terminal.
    public static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@") else { return text }
        var start = text.startIndex
        if let colon = text.firstIndex(of: ":"), text[colon...].hasPrefix("://") {
            start = text.index(colon, offsetBy: 3)
        }
        guard start <= at else { return "***" + text[at...] }
        return text[..<start] + "***" + text[at...]
    }

    private static func percentDecoded(_ text: String) throws(RedisError) -> String {
        guard let bytes = PercentDecoding.bytes(text.utf8, plusAsSpace: false) else {
            throw .invalidURL("broken %-escape in the credentials")
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

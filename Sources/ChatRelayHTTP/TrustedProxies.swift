import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// The proxies in front of a node whose `X-Forwarded-For` it believes (`--trusted-proxies`), and
/// how it finds a client's address behind them.
///
/// A proxy appends the address it received a request from to the `X-Forwarded-For` it got, so
/// the header's right end is written by the proxies and its left end by the client, who can put
/// anything there. The client's address is therefore the rightmost entry that is not itself a
/// trusted proxy, as nginx's `real_ip_recursive on` and HAProxy find it; and the header is read
/// at all only when the connection itself comes from a trusted proxy.
public struct TrustedProxies: Sendable, CustomStringConvertible {
    /// The trusted ranges, as given.
    public private(set) var ranges: [AddressRange] = []

    public init() {}

    /// Parses a comma- or space-separated list of addresses and CIDR ranges
    /// (`10.0.0.0/8, 127.0.0.1, fd00::/8`).
    /// - Throws: `AddressRange.ParseError` naming the entry that is not one.
    public init(parsing list: String) throws(AddressRange.ParseError) {
        for entry in list.split(whereSeparator: { $0 == "," || $0 == " " }) where !entry.isEmpty {
            ranges.append(try AddressRange(parsing: String(entry)))
        }
    }

    public var isEmpty: Bool { ranges.isEmpty }

    public var description: String { ranges.map(\.description).joined(separator: ",") }

    /// Whether `address` is one of the trusted proxies.
    public func contains(_ address: IPAddress) -> Bool {
        ranges.contains { $0.contains(address) }
    }

    /// Whether the connection's peer is a trusted proxy, whose forwarded headers are believed.
    public func isTrusted(peer: SocketAddress?) -> Bool {
        guard !ranges.isEmpty, let text = peer?.ipAddress, let address = IPAddress(text) else { return false }
        return contains(address)
    }

    /// The address a request came from: the connection's peer, or, when the peer is a trusted
    /// proxy, the rightmost `X-Forwarded-For` entry that is not (the leftmost if every one is).
    /// An entry that is not an address ends the walk at the last good one.
    /// - Parameter forwardedFor: every `X-Forwarded-For` line of the request, in order (a proxy
    ///   may add its own line rather than append to the client's).
    public func clientAddress(peer: SocketAddress?, forwardedFor: [String]) -> String {
        guard let peerText = peer?.ipAddress else { return "unknown" }
        guard !ranges.isEmpty, let peerAddress = IPAddress(peerText), contains(peerAddress) else { return peerText }
        var client = peerAddress
        for line in forwardedFor.reversed() {
            for entry in line.split(separator: ",").reversed() {
                guard let address = IPAddress(entry.trimmingSpaces) else { return client.description }
                client = address
                if !contains(address) { return client.description }
            }
        }
        return client.description
    }
}

/// An IPv4 or IPv6 address, IPv4 kept as such (an IPv4-mapped IPv6 address is its IPv4 address).
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// 4 or 16 bytes, network order.
    public let bytes: [UInt8]

    /// Parses dotted IPv4 or textual IPv6; nil for anything else (names, ports, brackets).
    public init?(_ text: some StringProtocol) {
        let text = String(text)
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let all = withUnsafeBytes(of: v6) { Array($0) }
        // ::ffff:a.b.c.d is the IPv4 address a.b.c.d seen through an IPv6 socket.
        if all[0..<10].allSatisfy({ $0 == 0 }), all[10] == 0xFF, all[11] == 0xFF {
            bytes = Array(all[12...])
        } else {
            bytes = all
        }
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        bytes.withUnsafeBytes { raw in
            _ = inet_ntop(bytes.count == 4 ? AF_INET : AF_INET6, raw.baseAddress, &buffer, socklen_t(buffer.count))
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An address and a prefix length: `10.0.0.0/8`, or one address (`127.0.0.1`, `/32` implied).
public struct AddressRange: Sendable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    public struct ParseError: Error, CustomStringConvertible {
        public let entry: String
        public var description: String {
            "\(entry.debugDescription) is not an IP address or CIDR range (for example 10.0.0.0/8, 127.0.0.1 or fd00::/8)"
        }
    }

    public init(parsing text: String) throws(ParseError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(parts[0]) else { throw ParseError(entry: text) }
        let bits = address.bytes.count * 8
        var length = bits
        if parts.count == 2 {
            guard let given = Int(parts[1]), (0...bits).contains(given) else { throw ParseError(entry: text) }
            length = given
        }
        network = address
        prefixLength = length
    }

    public func contains(_ address: IPAddress) -> Bool {
        guard address.bytes.count == network.bytes.count else { return false }
        var remaining = prefixLength
        for index in network.bytes.indices where remaining > 0 {
            let take = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - take))
            if address.bytes[index] & mask != network.bytes[index] & mask { return false }
            remaining -= take
        }
        return true
    }

    public var description: String {
        prefixLength == network.bytes.count * 8 ? network.description : "\(network)/\(prefixLength)"
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs.
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }
}

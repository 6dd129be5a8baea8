import NIOCore
import Testing

@testable import ChatRelayHTTP

/// The client address behind proxies: the rightmost `X-Forwarded-For` entry that is not a
/// trusted proxy, and only when the connection comes from one.
@Suite struct TrustedProxiesTests {
    func peer(_ address: String) throws -> SocketAddress {
        try SocketAddress(ipAddress: address, port: 40000)
    }

    @Test func parsesAddressesAndRangesAndRefusesAnythingElse() throws {
        let proxies = try TrustedProxies(parsing: "10.0.0.0/8, 127.0.0.1 fd00::/8,::1")
        #expect(proxies.description == "10.0.0.0/8,127.0.0.1,fd00::/8,::1")
        #expect(proxies.contains(IPAddress("10.200.3.4")!))
        #expect(!proxies.contains(IPAddress("11.0.0.1")!))
        #expect(proxies.contains(IPAddress("127.0.0.1")!))
        #expect(!proxies.contains(IPAddress("127.0.0.2")!))
        #expect(proxies.contains(IPAddress("fd12:3456::1")!))
        #expect(proxies.contains(IPAddress("::1")!))
        // An IPv4 address seen through an IPv6 socket is that IPv4 address.
        #expect(proxies.contains(IPAddress("::ffff:10.1.2.3")!))
        for bad in ["10.0.0.0/33", "nginx", "10.0.0.1/8/8", "1.2.3.4:80", "::1/129", "10.0.0.0/-1"] {
            #expect(throws: AddressRange.ParseError.self) { try TrustedProxies(parsing: bad) }
        }
        #expect(try TrustedProxies(parsing: "").isEmpty)
        // A range's host bits do not matter.
        #expect(try TrustedProxies(parsing: "192.168.7.9/16").contains(IPAddress("192.168.200.1")!))
        #expect(try TrustedProxies(parsing: "0.0.0.0/0").contains(IPAddress("8.8.8.8")!))
    }

    @Test func withoutTrustedProxiesTheHeaderIsIgnored() throws {
        let none = TrustedProxies()
        #expect(none.clientAddress(peer: try peer("203.0.113.7"), forwardedFor: ["10.9.9.9"]) == "203.0.113.7")
        #expect(none.clientAddress(peer: nil, forwardedFor: ["10.9.9.9"]) == "unknown")
    }

    @Test func aClientThatIsNotAProxyCannotNameItsAddress() throws {
        let proxies = try TrustedProxies(parsing: "127.0.0.1")
        #expect(proxies.clientAddress(peer: try peer("198.51.100.4"), forwardedFor: ["10.9.9.9"]) == "198.51.100.4")
    }

    @Test func theRightmostUntrustedEntryIsTheClient() throws {
        let proxies = try TrustedProxies(parsing: "127.0.0.1,10.0.0.0/8")
        let proxy = try peer("127.0.0.1")
        // nginx appends the address it saw after what the client wrote.
        #expect(proxies.clientAddress(peer: proxy, forwardedFor: ["10.9.9.1, 203.0.113.7, 198.51.100.4"]) == "198.51.100.4")
        // Two proxies in a row: the inner one's entry is skipped.
        #expect(proxies.clientAddress(peer: proxy, forwardedFor: ["6.6.6.6, 198.51.100.4, 10.1.1.1"]) == "198.51.100.4")
        // HAProxy adds a line of its own after the client's.
        #expect(proxies.clientAddress(peer: proxy, forwardedFor: ["6.6.6.6, 7.7.7.7", "198.51.100.4"]) == "198.51.100.4")
        // Every entry a proxy: the leftmost.
        #expect(proxies.clientAddress(peer: proxy, forwardedFor: ["10.0.0.9, 10.0.0.8"]) == "10.0.0.9")
        // No header: the proxy itself.
        #expect(proxies.clientAddress(peer: proxy, forwardedFor: []) == "127.0.0.1")
        // Spaces and IPv6.
        #expect(proxies.clientAddress(peer: proxy, forwardedFor: [" 2001:db8::1 ,\t10.0.0.2 "]) == "2001:db8::1")
    }

    @Test func aMalformedEntryEndsTheWalkAtTheLastGoodOne() throws {
        let proxies = try TrustedProxies(parsing: "127.0.0.1,10.0.0.0/8")
        let proxy = try peer("127.0.0.1")
        #expect(proxies.clientAddress(peer: proxy, forwardedFor: ["unknown, 10.0.0.2"]) == "10.0.0.2")
        #expect(proxies.clientAddress(peer: proxy, forwardedFor: ["198.51.100.4, garbage"]) == "127.0.0.1")
    }
}

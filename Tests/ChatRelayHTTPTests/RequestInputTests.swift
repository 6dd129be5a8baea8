import ChatRelay
import NIOCore
import NIOHTTP1
import Testing

@testable import ChatRelayHTTP

/// Every reader of what a request carries, fed random and nearly-right input: a request target
/// and its parameters, the route table, `Last-Event-ID` and `after` ids, stream positions,
/// `Authorization` and `Cookie`, `Content-Type`, bodies, `X-Forwarded-For`. Each reads it or
/// refuses it; none traps.
@Suite struct RequestInputTests {
    static let pieces = [
        "/", "rooms", "events", "messages", "presence", "typing", "auth", "tickets", "session", "health", "?", "&", "=", "%", "%2", "%zz",
        "%00", "%ff", "+", "room", "lastEventId", "after", "limit", "~", "~AAAA", "0", "-", "1-0", "18446744073709551616", "é", "\u{0}",
        " ", "\r\n", ",", ";", "\"", "Bearer ", "bearer", ".", "chat_relay_session", "1.2.3.4", "::1", "::ffff:10.0.0.1", "x",
    ]

    /// A string of random pieces and bytes.
    static func text(_ random: inout some RandomNumberGenerator) -> String {
        var text = ""
        for _ in 0..<Int.random(in: 0...12, using: &random) {
            if Bool.random(using: &random) {
                text += pieces.randomElement(using: &random)!
            } else {
                text += String(UnicodeScalar(UInt8.random(in: 0...127, using: &random)))
            }
        }
        return text
    }

    @Test func randomRequestPartsAreReadOrRefused() throws {
        var random = SystemRandomNumberGenerator()
        let rooms = [RoomName.lobby, try #require(RoomName("b"))]
        let proxies = try TrustedProxies(parsing: "127.0.0.1, 10.0.0.0/8")
        let peer = try SocketAddress(ipAddress: "127.0.0.1", port: 1)
        let methods: [HTTPMethod] = [.GET, .POST, .HEAD, .OPTIONS, .DELETE, .PUT, .RAW(value: "X")]
        var routed = 0
        for _ in 0..<20_000 {
            let uri = "/" + Self.text(&random)
            let target = RequestTarget(uri)
            if case .success = RelayRoute.match(method: methods.randomElement(using: &random)!, path: target.path) { routed += 1 }
            _ = target.value(of: ["room", "lastEventId", "after", "limit", "ticket", ""].randomElement(using: &random)!)
            _ = target.values(of: "room", limit: 3)
            let id = Self.text(&random)
            _ = try? RelayNode.messageID(id, field: "after")
            _ = try? RelayNode.streamPosition(id, rooms: rooms)
            _ = try? RelayNode.streamPosition("~" + id, rooms: rooms)
            _ = Credentials.bearer(Self.text(&random))
            _ = Credentials.cookie(named: "chat_relay_session", in: [Substring(Self.text(&random))])
            _ = MessageBodyDecoder.MediaType(contentType: Self.text(&random))
            let body = ByteBuffer(string: Self.text(&random))
            _ = try? MessageBodyDecoder.decode(body, as: .json)
            _ = try? MessageBodyDecoder.decode(body, as: .form)
            _ = proxies.clientAddress(peer: peer, forwardedFor: [Self.text(&random), Self.text(&random)])
        }
        #expect(routed > 0)
    }

    /// Bodies of random bytes (not only ASCII): invalid UTF-8, lone surrogates, deep nesting.
    @Test func randomBodiesAreReadOrRefused() {
        var random = SystemRandomNumberGenerator()
        let seeds = [
            "{\"user\":\"a\",\"text\":\"", "\\ud800", "\\udfff", "\\u00", "\"}", "[[[[", "user=", "&text=", "%F0%9F%98", "\u{FEFF}",
        ]
        for _ in 0..<20_000 {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 0...10, using: &random) {
                if Bool.random(using: &random) {
                    bytes += Array(seeds.randomElement(using: &random)!.utf8)
                } else {
                    bytes.append(UInt8.random(in: 0...255, using: &random))
                }
            }
            _ = try? MessageBodyDecoder.decode(ByteBuffer(bytes: bytes), as: .json)
            _ = try? MessageBodyDecoder.decode(ByteBuffer(bytes: bytes), as: .form)
        }
    }
}

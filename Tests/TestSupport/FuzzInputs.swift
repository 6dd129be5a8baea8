import Foundation

/// Makes the protocol fuzzer's inputs: requests built from the API's own grammar (its paths,
/// parameters, headers and bodies, valid and nearly so), then mutated byte by byte, and raw
/// noise. Structured inputs get past the HTTP parser into the node's own code; the mutations and
/// the noise find what the grammar did not think of.
public struct FuzzInputs {
    public var random: SeededGenerator

    public init(seed: UInt64) {
        random = SeededGenerator(seed: seed)
    }

    /// A case for `stage`.
    public mutating func next(_ stage: FuzzCase.Stage) -> FuzzCase {
        let bytes: [UInt8]
        switch stage {
        case .requestHead: bytes = mutated(request())
        case .requestBody: bytes = mutated(body())
        case .chunkedBody: bytes = mutated(chunkedBody())
        case .afterAnswer, .stream, .multiRoomStream, .pipelinedBehindStream, .afterStreamEnded: bytes = tail()
        }
        let endings: [FuzzCase.Ending] = [.close, .close, .close, .reset, .hold]
        var splits: [Int] = []
        if chance(0.3) {
            for _ in 0..<int(1...4) { splits.append(int(1...max(1, bytes.count / 2 + 1))) }
        }
        return FuzzCase(stage: stage, bytes: bytes, ending: endings[int(0...endings.count - 1)], splits: splits)
    }

    // MARK: Grammar

    /// A request: a head from the API's grammar, and sometimes a body and more requests behind it.
    mutating func request() -> [UInt8] {
        var text = pick([
            "GET", "GET", "GET", "POST", "POST", "HEAD", "OPTIONS", "DELETE", "PUT", "PATCH", "CONNECT", "TRACE", "get", "G\u{0}T", "",
            "PRI",
        ])
        text += pick([" ", " ", " ", "  ", "\t", ""])
        text += target()
        text += pick([" HTTP/1.1", " HTTP/1.1", " HTTP/1.0", " HTTP/2.0", " HTTP/1.9", " HTTP/1.1 x", "", " http/1.1", " HTTP/01.1"])
        var lines: [String] = []
        for _ in 0..<int(0...8) { lines.append(header()) }
        let eol = pick(["\r\n", "\r\n", "\r\n", "\n", "\r"])
        text += eol + lines.joined(separator: eol) + (lines.isEmpty ? "" : eol) + eol
        var bytes = Array(text.utf8)
        if chance(0.4) { bytes += body() }
        if chance(0.2) { bytes += request() }
        return bytes
    }

    /// A request target: the API's paths with rooms and parameters, nearly right or quite wrong.
    mutating func target() -> String {
        let rooms = [
            "fuzz", "fuzz-b", "lobby", "a", String(repeating: "r", count: int(60...70)), "%2e%2e", "..", "r%00", "é", "a/b", "", "~", "r r",
        ]
        let room = pick(rooms)
        var path = pick([
            "/", "/rooms/\(room)/events", "/rooms/\(room)/messages", "/rooms/\(room)/typing", "/rooms/\(room)/presence", "/events",
            "/messages", "/health/live", "/health/ready", "/metrics", "/auth/tickets", "/auth/session", "*",
            "http://x/rooms/\(room)/events", "/rooms/", "/rooms//events", "//", "/%", "/rooms/\(room)/events/",
            "/rooms/\(room)/messages/x", "/app.js", "/favicon.ico",
        ])
        if chance(0.6) {
            var parameters: [String] = []
            for _ in 0..<int(1...6) {
                let value = pick([
                    room, "0", "1-0", "\(UInt64.max)-\(UInt64.max)", "18446744073709551616-0", "-1", "~", "~AAAA",
                    "~" + String(repeating: "A", count: int(1...300)),
                    "1e400", "true", "%", "%zz", "%00", "", "a&b", String(repeating: "9", count: int(10...40)), "1", "500", "501",
                ])
                let name = pick(["room", "room", "lastEventId", "after", "limit", "presence", "user", "ticket", "x", "", "room[]"])
                parameters.append(chance(0.1) ? name : "\(name)=\(value)")
            }
            path += "?" + parameters.joined(separator: pick(["&", "&", ";", "&&"]))
        }
        return path
    }

    /// A header line: one the node reads, with a value nearly right or quite wrong; or noise.
    mutating func header() -> String {
        let numbers = ["0", "1", "-1", "18446744073709551616", "99999999999999999999999", "1 1", "0x10", " 5", "1,2", "+3"]
        switch int(0...15) {
        case 0: return "Host: " + pick(["f", "", "a b", "127.0.0.1:1"])
        case 1: return "Content-Length: " + pick(numbers)
        case 2: return "Transfer-Encoding: " + pick(["chunked", "gzip", "chunked, chunked", "identity", "gzip, chunked", "xchunked"])
        case 3:
            return "Content-Type: "
                + pick([
                    "application/json", "application/x-www-form-urlencoded", "text/plain", "application/json; charset=latin1", "", ";;;",
                ])
        case 4:
            return "Last-Event-ID: "
                + pick(["0", "1-0", "~AAAA", "~" + String(repeating: "_", count: int(1...200)), "\(UInt64.max)-1", "x", "1-", "-", ""])
        case 5: return "Authorization: " + pick(["Bearer ", "Bearer a.b.c", "Bearer " + jwtLike(), "Basic eDp5", "bearer", "Bearer  \t x"])
        case 6:
            return "Cookie: " + pick(["chat_relay_session=" + jwtLike(), "a=b; chat_relay_session=\"x\"", ";;=;", "chat_relay_session="])
        case 7: return "Origin: " + pick(["http://evil", "null", "http://f", ""])
        case 8: return "Idempotency-Key: " + pick(["k", String(repeating: "k", count: int(60...70)), "é", "", "a b"])
        case 9: return "Expect: " + pick(["100-continue", "200-ok", ""])
        case 10: return "Connection: " + pick(["close", "keep-alive", "upgrade", "close, close", ""])
        case 11: return "Upgrade: " + pick(["websocket", "h2c"])
        case 12: return "X-Forwarded-For: " + pick(["1.2.3.4", "::1, 10.0.0.1", "garbage", "", "1.2.3.4, , ,"])
        case 13: return "Accept: text/event-stream"
        case 14: return String(repeating: "X", count: int(1...40)) + ": " + String(repeating: "v", count: int(0...9000))
        default: return pick(["no colon", ": empty name", " leading: space", "Bad\u{1}Name: v", "X: \u{7f}\u{0}", "X:\tv"])
        }
    }

    /// A message body: JSON or a form, valid or nearly so.
    mutating func body() -> [UInt8] {
        let texts = [
            "hi", "", " ", "\u{0}", "\\ud800", "\\udc00\\ud800", "\\u0000", "\\u2028", "é", "\u{FEFF}",
            String(repeating: "x", count: int(4000...4200)),
            "\\\"", "\r\n", "a\u{7}b",
        ]
        switch int(0...5) {
        case 0:
            return Array("{\"user\":\"\(pick(["alice", "", " ", String(repeating: "u", count: 40)]))\",\"text\":\"\(pick(texts))\"}".utf8)
        case 1: return Array("user=\(pick(["a", "%ZZ", "%", "a+b", ""]))&text=\(pick(["hi", "%00", "%F0%9F", "", "+"]))".utf8)
        case 2: return Array(String(repeating: "[", count: int(1...3000)).utf8)
        case 3:
            return Array(
                "{\"user\":\"a\",\"text\":\"b\",\"text\":\"c\",\"x\":\(pick(["1e999999", "-0", "[1,{}]", "null", "\"\\u12\""]))}".utf8)
        case 4: return noise(maximum: 600)
        default: return Array("{\"user\":\"a\",\"text\":\"\(pick(texts))\"".utf8)
        }
    }

    /// A chunked body: chunks with sizes right and wrong, extensions, trailers, or an end missing.
    mutating func chunkedBody() -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<int(0...4) {
            let data = body()
            let size = pick([
                String(data.count, radix: 16), String(data.count, radix: 16), "FFFFFFFFFFFFFFFFFF", "-1", "0x10", "", " 5", "1;ext=1",
                "10000000",
            ])
            bytes += Array((size + pick(["\r\n", "\n", ";a=b\r\n"])).utf8) + data + Array(pick(["\r\n", "", "x\r\n"]).utf8)
        }
        if chance(0.7) { bytes += Array(pick(["0\r\n\r\n", "0\r\nTrailer: x\r\n\r\n", "0\r\n", "00000\r\n\r\n"]).utf8) }
        return bytes
    }

    /// What is sent after a request: nothing much, a byte, a request (whole or cut), noise, or a
    /// flood past what a stream's client may send.
    mutating func tail() -> [UInt8] {
        switch int(0...7) {
        case 0: return Array(pick(["x", "\r\n", "\0", "\r\n\r\n", " "]).utf8)
        case 1: return request()
        case 2: return Array(request().prefix(int(1...40)))
        case 3: return noise(maximum: 2000)
        case 4: return [UInt8](repeating: UInt8(ascii: "a"), count: int(15_000...40_000))
        case 5:
            return Array(
                "POST /rooms/fuzz/messages HTTP/1.1\r\nHost: f\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\r\n{\"user\":\"f\",\"text\":\"behind\"}"
                    .utf8)
        case 6: return mutated(request())
        default: return Array("GET /rooms/fuzz/events HTTP/1.1\r\nHost: f\r\n\r\n".utf8)
        }
    }

    /// Something shaped like a JWT: three base64url parts, sometimes with padding or junk.
    mutating func jwtLike() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        func part(_ generator: inout FuzzInputs) -> String {
            String((0..<generator.int(0...60)).map { _ in alphabet[generator.int(0...alphabet.count - 1)] })
        }
        let header = pick(["eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJub25lIn0", "e30", part(&self)])
        return header + "." + part(&self) + pick([".", "=.", "..", "."]) + part(&self) + pick(["", "=", "==", "%3D"])
    }

    // MARK: Mutation

    /// `bytes` with up to four random edits: bytes flipped, inserted, removed, repeated, or
    /// replaced by tokens parsers trip on.
    mutating func mutated(_ bytes: [UInt8]) -> [UInt8] {
        var bytes = bytes
        guard chance(0.6) else { return bytes }
        let tokens = [
            "\r\n", "\0", "\r", "\n", "%", "%00", "\u{FFFF}", "\u{10FFFF}", "99999999999999999999", "-1", "~", ":", "\"", "\\", "\u{80}",
        ]
        for _ in 0..<int(1...4) {
            let at = bytes.isEmpty ? 0 : int(0...bytes.count - 1)
            switch int(0...5) {
            case 0 where !bytes.isEmpty: bytes[at] ^= UInt8(truncatingIfNeeded: 1 << int(0...7))
            case 1: bytes.insert(contentsOf: noise(maximum: 8), at: at)
            case 2 where !bytes.isEmpty: bytes.removeSubrange(at..<min(bytes.count, at + int(1...16)))
            case 3 where !bytes.isEmpty:
                let range = at..<min(bytes.count, at + int(1...64))
                bytes.insert(contentsOf: Array(bytes[range]), at: at)
            case 4: bytes.insert(contentsOf: Array(pick(tokens).utf8), at: at)
            default: bytes.insert(UInt8.random(in: 0...255, using: &random), at: at)
            }
        }
        return bytes
    }

    mutating func noise(maximum: Int) -> [UInt8] {
        (0..<int(0...maximum)).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    // MARK: Choices

    mutating func chance(_ probability: Double) -> Bool {
        Double.random(in: 0..<1, using: &random) < probability
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int {
        Int.random(in: range, using: &random)
    }

    mutating func pick<T>(_ choices: [T]) -> T {
        choices[int(0...choices.count - 1)]
    }
}

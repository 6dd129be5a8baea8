import NIOCore
import Testing

@testable import RelayBench

@Suite struct BenchTargetTests {
    @Test func parsesHostAndPort() throws {
        let target = try #require(BenchTarget(url: "http://127.0.0.1:8080/"))
        #expect(target.host == "127.0.0.1")
        #expect(target.port == 8080)
        #expect(target.hostHeader == "127.0.0.1:8080")
        #expect(BenchTarget(url: "http://localhost")?.port == 80)
        #expect(BenchTarget(url: "http://[::1]:9000")?.host == "::1")
        #expect(BenchTarget(url: "http://[::1]:9000")?.hostHeader == "[::1]:9000")
    }

    @Test func refusesWhatItCannotUse() {
        for url in ["https://127.0.0.1:8080", "127.0.0.1:8080", "http://", "http://h:0", "http://h:70000", "http://h/path", "http://h:x"] {
            #expect(BenchTarget(url: url) == nil, "\(url)")
        }
    }

    @Test func presetsNameTheirPaths() {
        #expect(BenchProtocol.relay.subscribe(room: "r1") == "/rooms/r1/events")
        #expect(BenchProtocol.relay.publish(room: "r1") == "/rooms/r1/messages")
        #expect(BenchProtocol.nchan.subscribe(room: "r1") == "/sub/r1")
        #expect(BenchProtocol.nchan.publish(room: "r1") == "/pub/r1")
    }
}

@Suite struct BenchPayloadTests {
    func parse(_ line: String) -> (Int, UInt64)? {
        Array(line.utf8).withUnsafeBytes { BenchPayload.parse($0) }.map { ($0.sequence, $0.sentNanoseconds) }
    }

    @Test func aBodyCarriesItsSequenceAndSendTimeAndIsPadded() throws {
        let body = BenchPayload.body(sequence: 42, sentNanoseconds: 123_456_789, size: 100)
        #expect(body.utf8.count == 100)
        #expect(body.hasPrefix("{\"user\":\"bench\",\"text\":\"bench seq=42 t=123456789 x"))
        #expect(body.hasSuffix("\"}"))
        let parsed = try #require(parse(body))
        #expect(parsed == (42, 123_456_789))
        // Too small to pad: the fields are never cut.
        #expect(parse(BenchPayload.body(sequence: 7, sentNanoseconds: 9, size: 1))! == (7, 9))
    }

    @Test func findsTheFieldsInsideTheRelaysJSON() {
        let line = #"data: {"id":"1-0","room":"r","user":"bench","text":"bench seq=3 t=77 xx","time":"2026-11-25T00:00:00.000Z"}"#
        #expect(parse(line)! == (3, 77))
        #expect(parse("data: {\"text\":\"hello\"}") == nil)
        #expect(parse("data: seq=1 x=2") == nil)
    }
}

@Suite struct SSEDataScannerTests {
    @Test func findsEveryMessageWhateverTheChunkBoundaries() {
        var stream = "retry: 2000\n: chat-relay node a\n\n"
        for sequence in 0..<50 {
            stream += "id: \(sequence)-0\nevent: message\ndata: {\"text\":\"bench seq=\(sequence) t=\(1000 + sequence)\"}\n\n"
            if sequence % 7 == 0 { stream += ": heartbeat\n\n" }
        }
        let bytes = Array(stream.utf8)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var scanner = SSEDataScanner()
            var found: [Int] = []
            var offset = 0
            while offset < bytes.count {
                let length = min(bytes.count - offset, Int.random(in: 1...40, using: &generator))
                scanner.scan(ByteBuffer(bytes: bytes[offset..<offset + length])) { sequence, sent in
                    #expect(sent == UInt64(1000 + sequence))
                    found.append(sequence)
                }
                offset += length
            }
            #expect(found == Array(0..<50))
        }
    }
}

@Suite struct DeliveryLedgerTests {
    @Test func countsDuplicatesReorderingAndMissing() {
        var ledger = DeliveryLedger(messages: 130)
        for sequence in [0, 1, 3, 2, 3, 129, 200, -1] { _ = ledger.record(sequence) }
        #expect(ledger.distinct == 5)
        #expect(ledger.duplicates == 1)
        #expect(ledger.outOfOrder == 1)
        #expect(ledger.foreign == 2)
        var accepted = [UInt64](repeating: 0, count: 3)
        for sequence in [0, 1, 2, 3, 4, 128, 129] { accepted[sequence >> 6] |= 1 << UInt64(sequence & 63) }
        #expect(ledger.missing(of: accepted) == 2)  // 4 and 128
    }

    @Test func aSubscriberOfOneRoomMissesOnlyItsRoomsMessages() {
        // Room 1 of 3 gets messages 1, 4, 7, …
        var ledger = DeliveryLedger(messages: 200, room: 1, rooms: 3)
        for sequence in stride(from: 1, to: 200, by: 3) where sequence != 100 { _ = ledger.record(sequence) }
        let accepted = [UInt64](repeating: .max, count: 4)
        #expect(ledger.missing(of: accepted) == 1)  // 100; the other rooms' messages are not its own
    }

    @Test func placementsPutARoomsSubscribersOnOneTargetOrSpreadThem() throws {
        let targets = try (0..<3).map { try #require(BenchTarget(url: "http://127.0.0.1:\(8081 + $0)")) }
        var configuration = BenchConfiguration(targets: targets, room: "r", rooms: 4, subscribers: 12, rate: 1, messages: 1)
        // Subscriber j follows room j % 4; room 1's subscribers are 1, 5, 9.
        #expect([1, 5, 9].map { configuration.subscriberPlacement($0).room } == [1, 1, 1])
        #expect(Set([1, 5, 9].map { configuration.subscriberPlacement($0).target }) == [0, 1, 2])
        configuration.placement = .together
        #expect(Set([1, 5, 9].map { configuration.subscriberPlacement($0).target }) == [1])
        #expect(configuration.roomName(3) == "r-3")
    }
}

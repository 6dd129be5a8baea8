import NIOCore
import Testing

@testable import ChatRelay

@Suite struct StreamPositionTests {
    let rooms = ["a", "b", "c"].map { RoomName($0)! }

    @Test func aPositionReadsBackAsItWasWritten() throws {
        let cases: [[MessageID]] = [
            [.zero, .zero, .zero],
            [MessageID(ms: 1_764_000_000_000, seq: 0), .zero, MessageID(ms: 1_764_000_000_123, seq: 7)],
            [MessageID(ms: 1, seq: .max), MessageID(ms: .max, seq: 0), MessageID(ms: .max, seq: .max)],
        ]
        for ids in cases {
            let text = StreamPosition(ids: ids).text(rooms: rooms)
            #expect(text.hasPrefix("~"))
            #expect(
                text.utf8.allSatisfy {
                    $0 == UInt8(ascii: "~") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")
                        || ($0 < 128 && Character(Unicode.Scalar($0)).isLetter) || ($0 < 128 && Character(Unicode.Scalar($0)).isNumber)
                })
            #expect(try StreamPosition(parsing: text, rooms: rooms).ids == ids)
        }
    }

    @Test func recentPositionsAreShortAndTheLongestStaysInItsBound() throws {
        let now: UInt64 = 1_764_000_000_000
        let three = StreamPosition(ids: [
            MessageID(ms: now, seq: 0), MessageID(ms: now - 5000, seq: 1), MessageID(ms: now - 90_000, seq: 0),
        ])
        #expect(three.text(rooms: rooms).count <= 30)
        let many = (0..<StreamPosition.maximumRooms).map { RoomName("room-\($0)")! }
        let worst = StreamPosition(ids: many.indices.map { MessageID(ms: $0 == 0 ? .max : 1, seq: .max) })
        let text = worst.text(rooms: many)
        #expect(text.utf8.count <= StreamPosition.maximumLength)
        #expect(try StreamPosition(parsing: text, rooms: many) == worst)
    }

    @Test func garbageAndOtherRoomsAreRefused() {
        let good = StreamPosition(ids: [MessageID(ms: 10, seq: 1), .zero, MessageID(ms: 12, seq: 0)]).text(rooms: rooms)
        let malformed = [
            "", "~", "~!!!!", "1-0", "~" + String(repeating: "A", count: 5000), String(good.dropLast()), good + "A", good + "AA",
            "~AQ", "~" + Base64URL.encode([2] + Array(Base64URL.decode(good.utf8.dropFirst())!.dropFirst())),
        ]
        for text in malformed {
            #expect(throws: StreamPosition.ParseError.malformed, "\(text.prefix(40))") { try StreamPosition(parsing: text, rooms: rooms) }
        }
        // The same rooms in another order, or one fewer: another stream's position.
        #expect(throws: StreamPosition.ParseError.otherRooms) { try StreamPosition(parsing: good, rooms: rooms.reversed()) }
        #expect(throws: StreamPosition.ParseError.otherRooms) { try StreamPosition(parsing: good, rooms: Array(rooms.dropLast())) }
    }

    @Test func numbersOutOfRangeOrNotInTheirShortestFormAreRefused() {
        func text(_ body: [UInt8]) -> String {
            var bytes: [UInt8] = [1]
            let check = StreamPosition.check(rooms)
            for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: check >> UInt32(shift))) }
            return "~" + Base64URL.encode(bytes + body)
        }
        // count 3, base 5, rooms: 1 → ms 5 seq 0; 0 → zero; 6 → ms 0 seq 0.
        #expect(
            (try? StreamPosition(parsing: text([3, 5, 1, 0, 0, 6, 0]), rooms: rooms))?.ids == [
                MessageID(ms: 5, seq: 0), .zero, MessageID(ms: 0, seq: 0),
            ])
        // A distance past the base (ms below 0).
        #expect(throws: StreamPosition.ParseError.malformed) { try StreamPosition(parsing: text([3, 5, 1, 0, 0, 7, 0]), rooms: rooms) }
        // A varint with a trailing zero group, and one past 64 bits.
        #expect(throws: StreamPosition.ParseError.malformed) {
            try StreamPosition(parsing: text([3, 0x85, 0x00, 1, 0, 0, 0]), rooms: rooms)
        }
        let tooBig: [UInt8] = Array(repeating: 0xFF, count: 9) + [0x02]
        #expect(throws: StreamPosition.ParseError.malformed) { try StreamPosition(parsing: text([3] + tooBig + [0, 0, 0]), rooms: rooms) }
        // The wrong number of rooms for a matching check cannot happen by accident, but is refused.
        #expect(throws: StreamPosition.ParseError.malformed) { try StreamPosition(parsing: text([2, 5, 0, 0]), rooms: rooms) }
    }

    @Test func base64URLRoundTripsEveryLength() {
        for length in 0..<20 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
            #expect(Base64URL.decode(Base64URL.encode(bytes).utf8) == bytes)
        }
        #expect(Base64URL.encode(Array("hello?>".utf8)) == "aGVsbG8_Pg")
        #expect(Base64URL.decode("aGVsbG8_Ph".utf8) == nil)  // bits set past the last byte
    }

    @Test func theFramingWritesEachEventWithTheStreamsPositionAfterIt() throws {
        let first = stored(100, room: rooms[0])
        let second = stored(200, room: rooms[2])
        var framing = MultiRoomFraming(rooms: rooms, start: [.zero, MessageID(ms: 50, seq: 0), .zero])
        var buffer = ByteBuffer()
        framing.writeFrame(of: first, room: 0, into: &buffer)
        framing.writeFrame(of: second, room: 2, into: &buffer)
        let frames = String(buffer: buffer).components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(frames.count == 2)
        for (frame, message) in zip(frames, [first, second]) {
            let lines = frame.split(separator: "\n")
            #expect(lines[0].hasPrefix("id: ~"))
            #expect(
                lines.dropFirst().joined(separator: "\n")
                    == String(buffer: message.frame).split(separator: "\n").dropFirst().joined(separator: "\n"))
        }
        let last = String(frames[1].split(separator: "\n")[0].dropFirst(4))
        #expect(
            try StreamPosition(parsing: last, rooms: rooms).ids == [
                MessageID(ms: 100, seq: 0), MessageID(ms: 50, seq: 0), MessageID(ms: 200, seq: 0),
            ])
        #expect(framing.position.ids == [MessageID(ms: 100, seq: 0), MessageID(ms: 50, seq: 0), MessageID(ms: 200, seq: 0)])
    }
}

import ChatRelay
import Testing

@Suite struct MessageIDTests {
    @Test(arguments: [
        ("0-0", MessageID(ms: 0, seq: 0)),
        ("1764000000000-0", MessageID(ms: 1_764_000_000_000, seq: 0)),
        ("1764000000000-42", MessageID(ms: 1_764_000_000_000, seq: 42)),
        ("18446744073709551615-18446744073709551615", MessageID(ms: .max, seq: .max)),
    ])
    func parsesValidIDs(text: String, expected: MessageID) {
        #expect(MessageID(text) == expected)
        #expect(MessageID(text)?.description == text)
    }

    @Test(arguments: [
        "", "-", "1", "1-", "-1", "1--1", "1-1-1", " 1-1", "1-1 ", "+1-1", "a-1", "1-b", "1.0-1",
        "18446744073709551616-0", "0-18446744073709551616", "１-1",
    ])
    func rejectsInvalidIDs(text: String) {
        #expect(MessageID(text) == nil)
    }

    @Test func ordersNumericallyByMillisecondsThenSequence() {
        #expect(MessageID("9-5")! < MessageID("10-0")!)
        #expect(MessageID("10-2")! < MessageID("10-10")!)
        #expect(!(MessageID("10-10")! < MessageID("10-10")!))
        let ordered: [MessageID] = (0..<50).map { (index: Int) -> MessageID in
            MessageID(ms: UInt64(index / 5), seq: UInt64(index % 5))
        }
        let sorted = ordered.shuffled().sorted()
        #expect(sorted == ordered)
    }

    @Test func generatorIncreasesEvenWhenTheClockStallsOrGoesBack() {
        var generator = MessageIDGenerator()
        let ids = [1000, 1000, 1000, 999, 1001, 1001, 5].map { generator.next(nowMilliseconds: $0) }
        #expect(ids.map(\.description) == ["1000-0", "1000-1", "1000-2", "1000-3", "1001-0", "1001-1", "1001-2"])
    }

    @Test func roomNamesFollowTheRule() {
        #expect(RoomName("lobby")?.value == "lobby")
        #expect(RoomName("A-z_09") != nil)
        #expect(RoomName(String(repeating: "r", count: 64)) != nil)
        for bad in ["", String(repeating: "r", count: 65), "a b", "a/b", "é", "a.b", "a%20", "room!"] {
            #expect(RoomName(bad) == nil, "\(bad.debugDescription) should be refused")
        }
    }
}

import ChatRelay
import Foundation
import NIOCore
import TestSupport
import Testing

/// The SSE encoder, checked as a property: any user text, encoded by the relay and parsed back by
/// the independent parser in TestSupport, gives the same message.
@Suite struct SSEEncodingTests {
    /// Pieces that break naive encoders, mixed into random texts.
    static let nastyPieces: [String] = [
        "\n", "\r", "\r\n", "\n\n", "\0", "\u{2028}", "\u{2029}", "\u{85}", "\u{1B}", "\t", "\u{7F}",
        "data: ", "id: 9-9", "event: reset", "retry: 1", ": comment", ":", "\"", "\\", "\\n", "\\u0000",
        "😀", "👩‍👩‍👧", "é", "\u{FEFF}", "</script>", "<b>x</b>", "{\"id\":\"1-1\"}", " ", "a", "Z", "0",
    ]

    static func randomText(using generator: inout some RandomNumberGenerator) -> String {
        let count = Int.random(in: 1...12, using: &generator)
        return (0..<count).map { _ in nastyPieces.randomElement(using: &generator)! }.joined()
    }

    func decode(_ frame: ByteBuffer, chunked: Bool, using generator: inout some RandomNumberGenerator) -> [SSEParser.Event] {
        var parser = SSEParser()
        let bytes = Array(frame.readableBytesView)
        guard chunked else { return parser.feed(bytes) }
        var events: [SSEParser.Event] = []
        var index = 0
        while index < bytes.count {
            let end = min(bytes.count, index + Int.random(in: 1...7, using: &generator))
            events += parser.feed(bytes[index..<end])
            index = end
        }
        return events
    }

    @Test func anyTextSurvivesEncodingAndParsing() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<3000 {
            let user = Self.randomText(using: &generator)
            let text = Self.randomText(using: &generator)
            let id = MessageID(
                ms: UInt64.random(in: 0...UInt64(1) << 50, using: &generator), seq: UInt64.random(in: 0...9, using: &generator))
            let message = Message(
                id: id, room: RoomName("room-\(round % 7)")!, user: user, text: text, timeMs: 1_764_000_000_000 + UInt64(round))
            let stored = StoredMessage(message)

            let events = decode(stored.frame, chunked: round % 2 == 1, using: &generator)
            try #require(events.count == 1, "one event for \(text.debugDescription)")
            let event = events[0]
            #expect(event.type == "message")
            #expect(event.lastEventID == id.description)
            #expect(!event.data.contains("\n") && !event.data.contains("\r"), "data is one line")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: String])
            #expect(object["id"] == id.description)
            #expect(object["room"] == message.room.value)
            #expect(object["user"] == user)
            #expect(object["text"] == text)
            #expect(object["time"] == Timestamp.rfc3339(milliseconds: message.timeMs))
            #expect(String(buffer: stored.json) == event.data, "json is the data payload")
        }
    }

    @Test func framesFromForeignJSONMatchFramesFromMessages() {
        let message = Message(id: MessageID(ms: 5, seq: 1), room: .lobby, user: "a", text: "b\nc", timeMs: 7)
        let direct = StoredMessage(message)
        let rebuilt = StoredMessage(id: message.id, room: message.room, json: message.json())
        #expect(direct.frame == rebuilt.frame)
        #expect(direct.json == rebuilt.json)
    }

    @Test func controlFramesParseAsTheSpecSays() {
        var parser = SSEParser()
        var events = parser.feed(SSE.preamble(retryMilliseconds: 1500, node: "n\n1").readableBytesView)
        #expect(events.isEmpty)
        #expect(parser.retry == 1500)
        #expect(parser.comments == [" chat-relay node n1"])
        events = parser.feed(SSE.heartbeat.readableBytesView)
        #expect(events.isEmpty)
        #expect(parser.comments.last == " heartbeat")
        events = parser.feed(SSE.reset(oldest: MessageID(ms: 3, seq: 4)).readableBytesView)
        #expect(events == [SSEParser.Event(type: "reset", data: #"{"oldest":"3-4"}"#, lastEventID: "")])
        _ = parser.feed(SSE.retry(milliseconds: 777).readableBytesView)
        #expect(parser.retry == 777)
    }

    @Test func theTestParserFollowsTheStandard() {
        // Checks of the independent parser itself, from the WHATWG examples.
        var parser = SSEParser()
        let events = parser.feed(Array("data: YHOO\ndata: +2\ndata: 10\n\n: c\r\nid: 7\r\nevent: x\rdata\n\ndata:no-space\n\n".utf8))
        #expect(events.map(\.data) == ["YHOO\n+2\n10", "", "no-space"])
        #expect(events.map(\.type) == ["message", "x", "message"])
        #expect(parser.lastEventID == "7")
    }
}

import Dispatch
import NIOCore
import NIOPosix
import Testing

@testable import ChatRelay

/// Signals (typing, presence) in the hub: written live in their place among messages, never
/// queued for a stream still replaying, presence only where it was asked for.
@Suite struct HubSignalTests {
    let room = RoomName("r")!
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    func signal(_ kind: StoredMessage.Kind, _ text: String) -> StoredMessage {
        StoredMessage(signal: kind, room: room, json: ByteBuffer(string: "{\"x\":\"\(text)\"}"))
    }

    @Test func aSignalIsWrittenInItsPlaceWithoutAnID() async throws {
        let hub = Hub(subscriberBuffer: 16, maxConnections: 10, metrics: .discarding)
        let out = RecordingOutput(eventLoop: Self.group.next())
        try hub.subscribe(room: room, output: out).goLive(after: nil)
        try await out.settle()
        let gate = DispatchSemaphore(value: 0)
        out.eventLoop.execute { gate.wait() }
        hub.deliver(stored(1, room: room))
        hub.deliver(signal(.typing, "a"))
        hub.deliver(stored(2, room: room))
        gate.signal()
        try await out.settle { out.messageIDs.count == 2 }
        let text = out.text
        let typing = try #require(text.range(of: "event: typing\ndata: {\"x\":\"a\"}\n\n"))
        #expect(text.range(of: "id: 1-0")!.upperBound < typing.lowerBound)
        #expect(typing.upperBound < text.range(of: "id: 2-0")!.lowerBound)
        #expect(!text[typing].contains("id:"))
    }

    @Test func signalsAreNotQueuedForAStreamStillReplayingAndPresenceGoesOnlyWhereAsked() async throws {
        let hub = Hub(subscriberBuffer: 16, maxConnections: 10, metrics: .discarding)
        let replaying = RecordingOutput(eventLoop: Self.group.next())
        let s = try hub.subscribe(room: room, output: replaying)
        let plain = RecordingOutput(eventLoop: Self.group.next())
        try hub.subscribe(room: room, output: plain).goLive(after: nil)
        let watching = RecordingOutput(eventLoop: Self.group.next())
        try hub.subscribe(rooms: [room], after: [nil], presence: true, output: watching).goLive(after: nil)
        try await plain.settle()
        hub.deliver(signal(.typing, "t"))
        hub.deliver(signal(.presence, "p"))
        try await watching.settle { watching.text.contains("presence") }
        try await plain.settle { plain.text.contains("typing") }
        #expect(watching.text.contains("event: typing") && watching.text.contains("event: presence"))
        #expect(plain.text.contains("event: typing") && !plain.text.contains("event: presence"))
        s.goLive(after: nil)
        try await replaying.settle()
        #expect(replaying.written.isEmpty)
    }

    /// A presence change flushed while a stream is still writing its replay is not lost to it: its
    /// first presence event is taken as it goes live, so it already says so.
    @Test func aChangeFlushedDuringTheReplayIsInTheFirstPresenceEvent() async throws {
        let book = PresenceBook(node: "n:1", cap: 10)
        let hub = Hub(subscriberBuffer: 16, maxConnections: 10, metrics: .discarding, presence: book)
        let out = RecordingOutput(eventLoop: Self.group.next())
        let s = try hub.subscribe(rooms: [room], after: [nil], presence: true, output: out)
        _ = book.watch(room)
        let alice = Participant(user: "alice", name: nil, verified: false)
        book.apply(PresenceEntry(node: "a:1", room: room, member: alice, since: 1, connections: 1))
        _ = book.watch(room)  // another stream of the room, already live: the flush is for it
        for event in book.flush() { hub.deliver(event) }
        try await out.settle()
        #expect(out.written.isEmpty, "not live yet: nothing written")
        s.goLive(after: nil)
        try await out.settle { !out.written.isEmpty }
        #expect(out.text.contains(#""count":1,"members":[{"user":"alice""#))
        let bob = Participant(user: "bob", name: nil, verified: false)
        book.apply(PresenceEntry(node: "a:1", room: room, member: bob, since: 2, connections: 1))
        for event in book.flush() { hub.deliver(event) }
        try await out.settle { out.text.contains("joined") }
        #expect(out.text.contains(#""count":2,"joined":[{"user":"bob""#))
    }
}

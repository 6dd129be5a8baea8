import Dispatch
import NIOCore
import NIOPosix
import Testing

@testable import ChatRelay

/// A stream of several rooms in the hub: one subscriber, its events carrying its position.
@Suite struct HubMultiRoomTests {
    let rooms = ["a", "b", "c"].map { RoomName($0)! }
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    func makeHub(buffer: Int = 16, maxConnections: Int = 100) -> Hub {
        Hub(subscriberBuffer: buffer, maxConnections: maxConnections, metrics: .discarding)
    }

    func output() -> RecordingOutput {
        RecordingOutput(eventLoop: Self.group.next())
    }

    /// The events written, from the HTTP/1.1 chunks: (id line, room of the data, data's id).
    static func events(_ out: RecordingOutput) -> [(position: [MessageID], room: String, id: String)] {
        var bytes = Array(out.text.utf8)[...]
        var body: [UInt8] = []
        while let end = bytes.firstIndex(of: UInt8(ascii: "\r")) {
            let length = Int(String(decoding: bytes[..<end], as: UTF8.self), radix: 16)!
            let start = end + 2
            body += bytes[start..<(start + length)]
            bytes = bytes[(start + length + 2)...]
        }
        return String(decoding: body, as: UTF8.self).components(separatedBy: "\n\n").compactMap { frame in
            let lines = frame.split(separator: "\n")
            guard let idLine = lines.first(where: { $0.hasPrefix("id: ") }), let data = lines.first(where: { $0.hasPrefix("data: ") })
            else { return nil }
            let position = (try? StreamPosition(parsing: idLine.dropFirst(4), rooms: ["a", "b", "c"].map { RoomName($0)! }).ids) ?? []
            let json = String(data.dropFirst(6))
            func field(_ name: String) -> String {
                let marker = "\"\(name)\":\""
                let rest = json[json.range(of: marker)!.upperBound...]
                return String(rest.prefix { $0 != "\"" })
            }
            return (position, field("room"), field("id"))
        }
    }

    @Test func eachEventCarriesTheStreamsPositionInEveryRoom() async throws {
        let hub = makeHub()
        let out = output()
        let start: [MessageID] = [.zero, MessageID(ms: 5, seq: 0), .zero]
        let s = try hub.subscribe(rooms: rooms, after: start, output: out)
        s.goLive(with: MultiRoomFraming(rooms: rooms, start: start))
        try await out.settle()
        hub.deliver(stored(10, room: rooms[0]))
        hub.deliver(stored(11, room: rooms[2]))
        hub.deliver(stored(4, room: rooms[1]))  // at or below where the stream was in b: not sent
        hub.deliver(stored(12, room: rooms[1]))
        hub.deliver(stored(13, room: RoomName("elsewhere")!))
        try await out.settle { Self.events(out).count == 3 }
        let events = Self.events(out)
        #expect(events.map(\.room) == ["a", "c", "b"])
        #expect(events.map(\.id) == ["10-0", "11-0", "12-0"])
        let m = { (ms: UInt64) in MessageID(ms: ms, seq: 0) }
        #expect(events.map(\.position) == [[m(10), m(5), .zero], [m(10), m(5), m(11)], [m(10), m(12), m(11)]])
    }

    @Test func eventsQueuedBeforeItGoesLiveAreWrittenAfterTheReplayWithoutDuplicates() async throws {
        let hub = makeHub()
        let out = output()
        let s = try hub.subscribe(rooms: rooms, after: [.zero, .zero, .zero], output: out)
        try await out.settle()
        // Published while the opening was being read: 2 and 3 of a are also in its replay.
        for ms: UInt64 in [2, 3, 4] { hub.deliver(stored(ms, room: rooms[0])) }
        hub.deliver(stored(7, room: rooms[1]))
        try await out.settle()
        #expect(out.written.isEmpty)
        // The opening replayed a up to 3 and nothing of b or c.
        var framing = MultiRoomFraming(rooms: rooms, start: [.zero, .zero, .zero])
        var opening = ByteBuffer()
        for ms: UInt64 in [1, 2, 3] { framing.writeFrame(of: stored(ms, room: rooms[0]), room: 0, into: &opening) }
        s.goLive(with: framing)
        try await out.settle { Self.events(out).count == 2 }
        let m = { (ms: UInt64) in MessageID(ms: ms, seq: 0) }
        #expect(Self.events(out).map(\.id) == ["4-0", "7-0"])
        #expect(Self.events(out).map(\.position) == [[m(4), .zero, .zero], [m(4), m(7), .zero]])
    }

    /// Met once per room by the heartbeat, a stream of several rooms still counts one stalled
    /// heartbeat a round.
    @Test func aStalledStreamOfSeveralRoomsCountsOneHeartbeatARound() async throws {
        let hub = makeHub()
        let out = output()
        let s = try hub.subscribe(rooms: rooms, after: [nil, nil, nil], output: out)
        s.goLive(with: MultiRoomFraming(rooms: rooms, start: [.zero, .zero, .zero]))
        try await out.settle()
        out.isWritable = false
        let start = MonotonicClock.nanoseconds()
        for round in 1...UInt64(Subscription.stalledHeartbeatLimit) {
            #expect(!out.isClosed, "round \(round)")
            hub.heartbeat(interval: .seconds(15), now: start + round * 16_000_000_000)
            try await out.settle()
        }
        #expect(out.isClosed)
        #expect(s.closeReason == .slow)
        #expect(out.written.count == Int(Subscription.stalledHeartbeatLimit) - 1, "a heartbeat a round until the last")
    }

    @Test func itIsOneSubscriberForTheLimitsTheHeartbeatAndTheBookkeeping() async throws {
        let hub = makeHub(maxConnections: 1)
        let out = output()
        let s = try hub.subscribe(rooms: rooms, after: [nil, nil, nil], output: out)
        s.goLive(with: MultiRoomFraming(rooms: rooms, start: [.zero, .zero, .zero]))
        #expect(hub.connectionCount == 1)
        #expect(throws: Hub.SubscribeRefusal.atCapacity) { try hub.subscribe(room: rooms[0], output: self.output()) }
        for room in rooms { #expect(hub.hasSubscribers(room: room)) }
        try await out.settle()
        hub.heartbeat(interval: .seconds(15), now: MonotonicClock.nanoseconds() + 16_000_000_000)
        try await out.settle { !out.written.isEmpty }
        #expect(out.written == [SSE.heartbeatChunk])
        let held = await hub.bookkeeping()
        #expect(held.subscriptions == 1 && held.rooms == 3 && held.routes == 3 && held.fanoutSubscribers == 3)
        hub.unsubscribe(s)
        try await out.settle { out.isEnded }
        #expect(await hub.bookkeeping() == Hub.Bookkeeping(subscriptions: 0, rooms: 0, routes: 0, fanoutSubscribers: 0, fanoutQueued: 0))
    }

    @Test func slowInOneRoomEndsTheWholeStreamOnce() async throws {
        let hub = makeHub(buffer: 2)
        let out = output()
        let s = try hub.subscribe(rooms: rooms, after: [nil, nil, nil], output: out)
        s.goLive(with: MultiRoomFraming(rooms: rooms, start: [.zero, .zero, .zero]))
        try await out.settle()
        out.isWritable = false
        // Held on the loop so that all of them are one batch, with steps in two rooms.
        let gate = DispatchSemaphore(value: 0)
        out.eventLoop.execute { gate.wait() }
        for ms: UInt64 in 1...4 {
            hub.deliver(stored(ms, room: rooms[0]))
            hub.deliver(stored(ms, room: rooms[1]))
        }
        gate.signal()
        try await out.settle { out.isClosed }
        #expect(s.closeReason == .slow)
        #expect(hub.connectionCount == 0)
        for room in rooms { #expect(!hub.hasSubscribers(room: room)) }
    }

    @Test func theNodesResumePositionIsEachRoomsOwn() async throws {
        let hub = makeHub()
        let out = output()
        let m = { (ms: UInt64) in MessageID(ms: ms, seq: 0) }
        try hub.subscribe(rooms: rooms, after: [m(3), m(9), nil], output: out).goLive(
            with: MultiRoomFraming(rooms: rooms, start: [m(3), m(9), .zero]))
        try await out.settle()
        #expect(await hub.resumePositions { _ in true } == [rooms[0]: m(3), rooms[1]: m(9), rooms[2]: .zero])
    }
}

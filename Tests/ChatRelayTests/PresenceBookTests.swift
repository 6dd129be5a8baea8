import Foundation
import NIOCore
import Testing

@testable import ChatRelay

@Suite struct PresenceBookTests {
    let room = RoomName("r")!
    let alice = Participant(user: "alice", name: "Alice", verified: true)
    let bob = Participant(user: "bob", name: nil, verified: false)

    /// The JSON of each event `flush` returns.
    func flushed(_ book: PresenceBook) -> [[String: Any]] {
        book.flush().map { try! JSONSerialization.jsonObject(with: Data(String(buffer: $0.json).utf8)) as! [String: Any] }
    }

    @Test func twoTabsAreOneMemberWhoLeavesWithTheLast() {
        let book = PresenceBook(node: "n:1", cap: 10)
        #expect(book.join(alice, room: room, now: 5).connections == 1)
        let second = book.join(alice, room: room, now: 9)
        #expect(second.connections == 2 && second.since == 5)
        #expect(book.leave(alice, room: room)?.connections == 1)
        #expect(book.localEntries().map(\.connections) == [1])
        #expect(book.leave(alice, room: room)?.connections == 0)
        #expect(book.localEntries().isEmpty)
        #expect(book.leave(alice, room: room) == nil)
    }

    @Test func changesWithinAnIntervalAreOneEventAndAComeAndGoIsNone() {
        let book = PresenceBook(node: "n:1", cap: 10)
        #expect(book.watch(room))
        #expect(!book.watch(room))
        // Entries as the broker delivers them, from two nodes: alice on both is one member.
        book.apply(PresenceEntry(node: "a:1", room: room, member: alice, since: 10, connections: 1))
        book.apply(PresenceEntry(node: "b:1", room: room, member: alice, since: 7, connections: 2))
        book.apply(PresenceEntry(node: "b:1", room: room, member: bob, since: 8, connections: 1))
        let first = flushed(book)
        #expect(first.count == 1)
        #expect(first[0]["count"] as? Int == 2)
        #expect((first[0]["joined"] as? [[String: Any]])?.map { $0["user"] as? String } == ["alice", "bob"])
        #expect(((first[0]["joined"] as? [[String: Any]])?.first)?["connections"] as? Int == 3)
        #expect(flushed(book).isEmpty)
        // Bob leaves and comes back within one interval: nothing to say.
        book.apply(PresenceEntry(node: "b:1", room: room, member: bob, since: 8, connections: 0))
        book.apply(PresenceEntry(node: "b:1", room: room, member: bob, since: 20, connections: 1))
        #expect(flushed(book).isEmpty)
        // Node b dies: alice stays (node a), bob leaves.
        book.nodesGone(["b:1"])
        let gone = flushed(book)
        #expect(gone.count == 1 && gone[0]["left"] as? [String] == ["bob"] && gone[0]["count"] as? Int == 1)
        // Rooms nobody here watches are not followed.
        book.apply(PresenceEntry(node: "a:1", room: RoomName("elsewhere")!, member: bob, since: 1, connections: 1))
        #expect(flushed(book).isEmpty)
        book.unwatch(room)
        #expect(book.watchedRooms == 1)
        book.unwatch(room)
        #expect(book.watchedRooms == 0)
    }

    @Test func aSeedReadBeforeADeliveryDoesNotUndoIt() {
        let book = PresenceBook(node: "n:1", cap: 10)
        _ = book.watch(room)
        // Bob left after the seed was read, and his leave was delivered first.
        book.apply(PresenceEntry(node: "a:1", room: room, member: bob, since: 1, connections: 0))
        book.seed(
            room,
            with: [
                PresenceEntry(node: "a:1", room: room, member: bob, since: 1, connections: 1),
                PresenceEntry(node: "a:1", room: room, member: alice, since: 2, connections: 1),
            ])
        let snapshot = try! JSONSerialization.jsonObject(with: Data(String(buffer: book.snapshot(room).json).utf8)) as! [String: Any]
        #expect((snapshot["members"] as? [[String: Any]])?.map { $0["user"] as? String } == ["alice"])
    }

    @Test func aboveTheCapEventsCarryTheCountAlone() {
        let book = PresenceBook(node: "n:1", cap: 2)
        _ = book.watch(room)
        for (index, user) in ["a", "b", "c"].enumerated() {
            book.apply(
                PresenceEntry(
                    node: "x:1", room: room, member: Participant(user: user, name: nil, verified: false), since: UInt64(index),
                    connections: 1))
        }
        let events = flushed(book)
        #expect(events.count == 1 && events[0]["count"] as? Int == 3 && events[0]["joined"] == nil)
        let snapshot = String(buffer: book.snapshot(room).json)
        #expect(snapshot == #"{"room":"r","count":3}"#)
    }

    @Test func theFastReadingAgreesWithJSONDecoder() {
        let entries = [
            PresenceEntry(node: "n:1", room: room, member: alice, since: 1_764_000_000_000, connections: 2),
            PresenceEntry(node: "n:1", room: room, member: bob, since: 0, connections: 0),
            PresenceEntry(
                node: "nöde:7", room: room, member: Participant(user: "ünï", name: "Zoë \"Z\"", verified: false), since: 5, connections: 1),
        ]
        for entry in entries {
            let bytes = Array(entry.json.readableBytesView)
            #expect(PresenceEntry(json: bytes) == entry)
            // An escaped string goes the slow way; the others the fast one.
            #expect((PresenceEntry.parseWritten(bytes) == nil) == bytes.contains(UInt8(ascii: "\\")))
        }
        for broken in [#"{"node":"n","room":"r","user":"u","verified":true,"since":1,"connections":1}x"#, #"{"node":"n"}"#, ""] {
            #expect(PresenceEntry.parseWritten(Array(broken.utf8)) == nil)
        }
    }

    @Test func anEntryReadsBackFromItsJSON() {
        let entry = PresenceEntry(node: "n:1", room: room, member: alice, since: 1_764_000_000_000, connections: 2)
        #expect(PresenceEntry(json: Array(entry.json.readableBytesView)) == entry)
        #expect(PresenceEntry(json: Array("{}".utf8)) == nil)
        #expect(
            PresenceEntry(json: Array(#"{"node":"n","room":"bad room","user":"u","verified":true,"since":1,"connections":1}"#.utf8)) == nil)
    }

    /// A stream that opens between two flushes starts from the members as the others were told;
    /// the next change is then right for all of them, and no event is sent for its opening.
    @Test func aNewStreamStartsFromWhatTheOthersWereToldAndTheNextChangeIsRightForAll() {
        let book = PresenceBook(node: "n:1", cap: 10)
        _ = book.watch(room)
        book.apply(PresenceEntry(node: "a:1", room: room, member: alice, since: 1, connections: 1))
        book.apply(PresenceEntry(node: "b:1", room: room, member: bob, since: 2, connections: 1))
        _ = book.flush()
        // Alice leaves and carol arrives; before the next flush a second stream opens.
        let carol = Participant(user: "carol", name: nil, verified: false)
        book.apply(PresenceEntry(node: "a:1", room: room, member: alice, since: 1, connections: 0))
        book.apply(PresenceEntry(node: "b:1", room: room, member: carol, since: 3, connections: 1))
        _ = book.watch(room)
        let first = String(buffer: book.snapshot(room).json)
        #expect(first.contains(#""count":2"#) && first.contains(#""user":"alice""#) && first.contains(#""user":"bob""#))
        #expect(!first.contains("carol"))
        // The next change, for every stream: carol joined, alice left.
        let events = flushed(book)
        #expect(events.count == 1)
        #expect((events[0]["joined"] as? [[String: Any]])?.map { $0["user"] as? String } == ["carol"])
        #expect(events[0]["left"] as? [String] == ["alice"] && events[0]["count"] as? Int == 2)
    }

    /// A broker that lost its subscription reads the room again: entries gone meanwhile leave,
    /// new ones join, and one delivered after the read began is kept over the read.
    @Test func aResyncReplacesTheViewButKeepsWhatWasDeliveredSince() {
        let book = PresenceBook(node: "n:1", cap: 10)
        _ = book.watch(room)
        book.apply(PresenceEntry(node: "a:1", room: room, member: alice, since: 1, connections: 1))
        _ = book.flush()
        #expect(book.watchedRoomNames == [room])
        book.resyncing(room)
        // Delivered after the read began: carol arrived (the read does not have her yet).
        let carol = Participant(user: "carol", name: nil, verified: false)
        book.apply(PresenceEntry(node: "a:1", room: room, member: carol, since: 5, connections: 1))
        // The read: alice left meanwhile (missed), bob arrived (missed).
        book.resynced(room, with: [PresenceEntry(node: "b:1", room: room, member: bob, since: 3, connections: 1)])
        let events = flushed(book)
        #expect(events.count == 1 && events[0]["count"] as? Int == 2)
        #expect(Set((events[0]["joined"] as? [[String: Any]] ?? []).compactMap { $0["user"] as? String }) == ["bob", "carol"])
        #expect(events[0]["left"] as? [String] == ["alice"])
    }
}

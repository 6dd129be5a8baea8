import ChatRelay
import Metrics
import Testing

@testable import ChatRelayHTTP

@Suite struct PresenceUpdatesTests {
    func entry(_ user: String, room: String = "r", connections: Int) -> PresenceEntry {
        PresenceEntry(
            node: "n:1", room: RoomName(room)!, member: Participant(user: user, name: nil, verified: false), since: 1,
            connections: connections)
    }

    @Test func aBatchKeepsTheLastChangeOfEachEntryAndTheBoundHolds() async {
        let updates = PresenceUpdates(limit: 4, dropped: Counter(label: "test_dropped"))
        updates.add(entry("a", connections: 1))
        updates.add(entry("b", connections: 1))
        updates.add(entry("a", connections: 2))
        updates.add(entry("a", room: "s", connections: 1))
        updates.add(entry("c", connections: 1))  // past the bound: dropped
        let batch = updates.take()
        #expect(batch.map { "\($0.room)/\($0.member.user)=\($0.connections)" } == ["r/b=1", "r/a=2", "s/a=1"])
        #expect(updates.take().isEmpty)
        // The doorbell rang for the first change of the batch.
        var bell = updates.doorbell.makeAsyncIterator()
        #expect(await bell.next() != nil)
    }
}

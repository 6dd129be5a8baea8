import NIOCore
import Synchronization

/// Who is in which room, as this node knows it.
///
/// Two parts. *Local*: the members of this node's streams, with how many streams each has open
/// per room; each change is an entry (`PresenceEntry`) the node hands to its broker, which stores
/// it and sends it to every node. *Views*: for each room where a local stream asked for presence
/// events, the entries of every node, fed only by what the broker delivers (this node's own
/// included), seeded from the broker when the view begins, and cleared of a node's entries when
/// that node is gone. Every `flushInterval` the views that changed are compared with what their
/// streams were last told, and one `event: presence` per room says who joined and who left: a
/// thousand arrivals within the interval are one event, and an arrival that left again is none.
///
/// A member is counted once however many streams (tabs, nodes) it has open; it leaves when the
/// last one closes. Above `cap` members a room's events carry the count alone.
public final class PresenceBook: Sendable {
    /// This node in entries: its id and start time (`<node id>:<ms>`).
    public let node: String
    /// The most members an event or answer lists.
    public let cap: Int

    private struct Local {
        var member: Participant
        var since: UInt64
        var connections: Int
    }

    private struct State {
        var local: [RoomName: [String: Local]] = [:]
        var views: [RoomName: PresenceView] = [:]
        /// Views whose entries changed since the last flush.
        var dirty: Set<RoomName> = []
    }

    /// Every change takes a room's view out of its dictionary and puts it back, so that the view's
    /// own dictionaries are not shared with a copy left behind (each change would copy them all).
    private let state = Mutex(State())

    public init(node: String, cap: Int) {
        self.node = node
        self.cap = max(1, cap)
    }

    // MARK: This node's members

    /// A stream of `member` opened in `room`: returns this node's entry to store and send.
    public func join(_ member: Participant, room: RoomName, now: UInt64 = Timestamp.nowMilliseconds()) -> PresenceEntry {
        state.withLock { state in
            var local = state.local[room, default: [:]][member.user] ?? Local(member: member, since: now, connections: 0)
            local.connections += 1
            local.member = member
            state.local[room, default: [:]][member.user] = local
            return PresenceEntry(node: node, room: room, member: member, since: local.since, connections: local.connections)
        }
    }

    /// A stream of `member` in `room` closed: returns this node's entry (0 connections when it
    /// was the member's last here), or nil if `join` did not count it.
    public func leave(_ member: Participant, room: RoomName) -> PresenceEntry? {
        state.withLock { state in
            // Taken out and put back: a copy left in the dictionary would make every change copy it.
            guard var members = state.local.removeValue(forKey: room) else { return nil }
            guard var local = members[member.user] else {
                state.local[room] = members
                return nil
            }
            local.connections -= 1
            if local.connections > 0 {
                members[member.user] = local
            } else {
                members[member.user] = nil
            }
            state.local[room] = members.isEmpty ? nil : members
            return PresenceEntry(node: node, room: room, member: local.member, since: local.since, connections: local.connections)
        }
    }

    /// Every entry of this node now: what it stores again when its broker lost them.
    public func localEntries() -> [PresenceEntry] {
        state.withLock { state in
            state.local.flatMap { room, members in
                members.values.map {
                    PresenceEntry(node: node, room: room, member: $0.member, since: $0.since, connections: $0.connections)
                }
            }
        }
    }

    // MARK: Views

    /// A local stream wants presence events of `room`. Returns true when the view is new: the
    /// caller then seeds it with the broker's entries.
    public func watch(_ room: RoomName) -> Bool {
        state.withLock { state in
            let new = state.views[room] == nil
            state.views[room, default: PresenceView()].watchers += 1
            return new
        }
    }

    /// A stream that watched `room` ended; the view goes with its last watcher.
    public func unwatch(_ room: RoomName) {
        state.withLock { state in
            guard var view = state.views.removeValue(forKey: room) else { return }
            view.watchers -= 1
            if view.watchers > 0 {
                state.views[room] = view
            } else {
                state.views[room] = nil
                state.dirty.remove(room)
            }
        }
    }

    /// The entries the broker held for `room` when its view began; those delivered since win.
    public func seed(_ room: RoomName, with entries: [PresenceEntry]) {
        state.withLock { state in
            guard var view = state.views.removeValue(forKey: room) else { return }
            for entry in entries where !view.delivered.contains(entry.field) {
                view.set(entry)
            }
            state.views[room] = view
            state.dirty.insert(room)
        }
    }

    /// The rooms with a view, for a broker that may have missed deliveries (its subscription was
    /// lost) to read again: `resyncing` before each read, `resynced` with what it read.
    public var watchedRoomNames: [RoomName] { state.withLock { Array($0.views.keys) } }

    /// A read of `room`'s entries is about to start: deliveries from now on are newer than it.
    public func resyncing(_ room: RoomName) {
        state.withLock { $0.views[room]?.delivered.removeAll() }
    }

    /// The entries the broker holds for `room`, read after `resyncing`: they replace the view's
    /// (but for those delivered since), and streams hear of the difference.
    public func resynced(_ room: RoomName, with entries: [PresenceEntry]) {
        state.withLock { state in
            guard var view = state.views.removeValue(forKey: room) else { return }
            view.replace(with: entries)
            state.views[room] = view
            state.dirty.insert(room)
        }
    }

    /// An entry the broker delivered (from any node, this one's too).
    public func apply(_ entry: PresenceEntry) {
        state.withLock { state in
            guard var view = state.views.removeValue(forKey: entry.room) else { return }
            view.set(entry)
            view.delivered.insert(entry.field)
            state.views[entry.room] = view
            state.dirty.insert(entry.room)
        }
    }

    /// The nodes `nodes` are gone (stopped refreshing): their members leave every view.
    public func nodesGone(_ nodes: Set<String>) {
        guard !nodes.isEmpty else { return }
        state.withLock { state in
            for room in Array(state.views.keys) {
                guard var view = state.views.removeValue(forKey: room) else { continue }
                if view.remove(nodes: nodes) { state.dirty.insert(room) }
                state.views[room] = view
            }
        }
    }

    /// A change of a room's members since its streams were last told: who joined (nil above the
    /// cap) and who left.
    private struct Change {
        let room: RoomName
        let count: Int
        let joined: [PresenceMember]?
        let left: [String]
    }

    /// What changed in `room` since its streams were last told (nil: nothing); from now on they
    /// count as told.
    private func takeChange(of room: RoomName, in state: inout State) -> Change? {
        guard state.views[room]?.hasChanges == true, var view = state.views.removeValue(forKey: room) else { return nil }
        let (joined, left) = view.takeChanges(cap: cap)
        state.views[room] = view
        return Change(room: room, count: view.count, joined: joined, left: left)
    }

    /// A new stream's first presence event of `room`: `{"room":…,"count":N,"members":[…]}` (the
    /// list left out above `cap`), the members as the room's other streams were last told, so
    /// that the next change (at most a flush interval away) is right for all of them. With no
    /// other stream, the members as they are.
    public func snapshot(_ room: RoomName) -> StoredMessage {
        let (count, members) = state.withLock { state in
            guard var view = state.views.removeValue(forKey: room) else { return (0, [PresenceMember]?([])) }
            if view.watchers <= 1 {
                // No other stream to keep in step with: everything so far counts as told.
                _ = view.takeChanges(cap: cap)
            }
            let told = (view.toldCount, view.toldMembers(cap: cap))
            state.views[room] = view
            return told
        }
        var json = ByteBuffer()
        PresenceMember.writeOpening(room: room, count: count, into: &json)
        if let members {
            json.writeStaticString(",\"members\":")
            PresenceMember.writeJSON(members, into: &json)
        }
        json.writeStaticString("}")
        return StoredMessage(signal: .presence, room: room, json: json)
    }

    /// For each view that changed since the last call and whose members are not those its
    /// streams were last told of: `event: presence` with the count, who joined (members) and who
    /// left (users), the lists left out above `cap`.
    public func flush() -> [StoredMessage] {
        let changes: [Change] = state.withLock { state in
            var changes: [Change] = []
            for room in state.dirty {
                if let change = takeChange(of: room, in: &state) { changes.append(change) }
            }
            state.dirty.removeAll(keepingCapacity: true)
            return changes
        }
        return changes.map(event)
    }

    /// `{"room":…,"count":N,"joined":[…],"left":[…]}`, the lists left out above `cap`.
    private func event(_ change: Change) -> StoredMessage {
        var json = ByteBuffer()
        PresenceMember.writeOpening(room: change.room, count: change.count, into: &json)
        if let joined = change.joined {
            json.writeStaticString(",\"joined\":")
            PresenceMember.writeJSON(joined, into: &json)
            json.writeStaticString(",\"left\":[")
            for (index, user) in change.left.enumerated() {
                if index > 0 { json.writeStaticString(",") }
                JSONString.write(user, into: &json)
            }
            json.writeStaticString("]")
        }
        json.writeStaticString("}")
        return StoredMessage(signal: .presence, room: change.room, json: json)
    }

    /// Rooms with a view now (for tests and the bookkeeping).
    public var watchedRooms: Int { state.withLock { $0.views.count } }
}

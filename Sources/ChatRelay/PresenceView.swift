/// One room's members as a node knows them: every node's entries, the connections of each user
/// summed over them, and who joined or left since the room's streams were last told.
///
/// Kept up to date entry by entry, so that a room of thousands costs per change, not per member:
/// a new stream's first event or a flush reads only the changes, and the member list only when
/// the room is within the cap.
struct PresenceView {
    /// Every node's entries, by `PresenceEntry.field`.
    private(set) var entries: [String: PresenceEntry] = [:]
    /// Per user, its connections on every node (users with none are not here).
    private var connections: [String: Int] = [:]
    /// Users present now who were not when the streams were last told, and the other way round.
    private var joined: Set<String> = []
    private var left: Set<String> = []
    /// The users of `left` as the streams were told of them.
    private var departed: [String: PresenceMember] = [:]
    /// Local streams that asked for presence events of the room.
    var watchers = 0
    /// Fields set by a delivered entry since the view began: a seed read earlier must not
    /// overwrite them.
    var delivered: Set<String> = []

    /// Members now.
    var count: Int { connections.count }

    /// Members as the room's streams were last told.
    var toldCount: Int { count - joined.count + left.count }

    /// Whether some change was not told yet.
    var hasChanges: Bool { !joined.isEmpty || !left.isEmpty }

    /// Sets a node's entry (removes it at 0 connections).
    mutating func set(_ entry: PresenceEntry) {
        let previous = entries[entry.field]
        entries[entry.field] = entry.connections > 0 ? entry : nil
        adjust(entry.member.user, by: entry.connections - (previous?.connections ?? 0), last: previous ?? entry)
    }

    /// Makes the entries those of `read` (the broker's, read after `delivered` was last
    /// cleared), but for the fields delivered since, which are newer.
    mutating func replace(with read: [PresenceEntry]) {
        let fields = Set(read.map(\.field))
        for entry in entries.values where !fields.contains(entry.field) && !delivered.contains(entry.field) {
            var gone = entry
            gone.connections = 0
            set(gone)
        }
        for entry in read where !delivered.contains(entry.field) {
            set(entry)
        }
    }

    /// Removes the entries of `nodes`; true if there were any.
    mutating func remove(nodes: Set<String>) -> Bool {
        let gone = entries.values.filter { nodes.contains($0.node) }
        for entry in gone {
            entries[entry.field] = nil
            adjust(entry.member.user, by: -entry.connections, last: entry)
        }
        return !gone.isEmpty
    }

    /// Changes `user`'s connections by `delta`; `last` is its entry that changed, as it was.
    private mutating func adjust(_ user: String, by delta: Int, last: PresenceEntry) {
        guard delta != 0 else { return }
        let before = connections[user] ?? 0
        let after = max(0, before + delta)
        connections[user] = after > 0 ? after : nil
        if before == 0, after > 0 {
            // Back before anyone was told it left: nothing to tell.
            if left.remove(user) == nil {
                joined.insert(user)
            } else {
                departed[user] = nil
            }
        } else if before > 0, after == 0 {
            if joined.remove(user) == nil {
                left.insert(user)
                departed[user] = PresenceMember(member: last.member, since: last.since, connections: before)
            }
        }
    }

    /// The members as the room's streams were last told (so that a new stream starts where they
    /// are, and the next change is right for all), oldest first; nil above `cap` (a room that
    /// large is told in counts).
    func toldMembers(cap: Int) -> [PresenceMember]? {
        guard toldCount <= cap else { return nil }
        let stayed = joined.isEmpty ? Array(entries.values) : entries.values.filter { !joined.contains($0.member.user) }
        return (PresenceMember.merging(stayed) + departed.values).sorted {
            ($0.since, $0.member.user) < ($1.since, $1.member.user)
        }
    }

    /// Who joined (as members; nil above `cap`) and left (users) since the last call.
    mutating func takeChanges(cap: Int) -> (joined: [PresenceMember]?, left: [String]) {
        defer {
            joined.removeAll()
            left.removeAll()
            departed.removeAll()
        }
        let leftUsers = left.sorted()
        guard count <= cap, joined.count <= cap, left.count <= cap else { return (nil, leftUsers) }
        let joinedMembers = PresenceMember.merging(entries.values.filter { joined.contains($0.member.user) })
        return (joinedMembers, leftUsers)
    }
}

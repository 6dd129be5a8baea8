/// A stored message: validated fields, the id its broker assigned and the accepting node's time.
public struct Message: Sendable, Equatable {
    public var id: MessageID
    public var room: RoomName
    public var user: String
    /// The display name a verified token gave its author (`--auth jwt`), if any.
    public var name: String?
    public var text: String
    /// Milliseconds since the Unix epoch on the node that accepted the message.
    public var timeMs: UInt64

    public init(id: MessageID, room: RoomName, user: String, name: String? = nil, text: String, timeMs: UInt64) {
        self.id = id
        self.room = room
        self.user = user
        self.name = name
        self.text = text
        self.timeMs = timeMs
    }
}

/// A message as a client submitted it, before validation.
public struct MessageDraft: Sendable, Equatable {
    public var room: RoomName
    public var user: String
    /// A display name, set by the node from a verified token (never from a request body).
    public var name: String?
    public var text: String
    /// `user` (and `name`) come from a verified token: checked there, not against the rules for
    /// names a client picks.
    public var userIsVerified: Bool

    public init(room: RoomName, user: String, name: String? = nil, text: String, userIsVerified: Bool = false) {
        self.room = room
        self.user = user
        self.name = name
        self.text = text
        self.userIsVerified = userIsVerified
    }
}

/// Why a field was refused: becomes `400 invalid_field` with a sentence a person can act on.
public struct FieldError: Error, Equatable, Sendable, CustomStringConvertible {
    public var field: String
    public var reason: String

    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }

    public var description: String { "\(field): \(reason)" }
}

/// The limits a node applies to message fields.
public struct MessageLimits: Sendable, Equatable {
    /// The most user-name characters (grapheme clusters) after trimming.
    public static let maxUserCharacters = 32
    /// The most UTF-8 bytes of `text` after trimming (`--max-message-bytes`).
    public var maxTextBytes: Int

    public init(maxTextBytes: Int = 4096) {
        self.maxTextBytes = maxTextBytes
    }
}

import ChatRelay

/// Who a request comes from, as a verified token (or the ticket made from one) says.
public struct Identity: Sendable, Equatable, Codable {
    /// The token's `sub`: a message's `user`.
    public var subject: String
    /// The token's optional `name` claim: a message's display `name`.
    public var name: String?
    public var grants: RoomGrants
    /// The token's `exp`, seconds since the Unix epoch: a stream opened with it ends then.
    public var expiresAt: Double

    public init(subject: String, name: String?, grants: RoomGrants, expiresAt: Double) {
        self.subject = subject
        self.name = name
        self.grants = grants
        self.expiresAt = expiresAt
    }

    public func allows(_ action: AccessAction, in room: RoomName) -> Bool {
        grants.allows(action, in: room)
    }

    /// The longest `sub` and `name` a token may carry, in UTF-8 bytes and characters.
    public static let maxSubjectBytes = 255
    public static let maxNameCharacters = 64
}

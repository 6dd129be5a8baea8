import ChatRelay

/// What a token lets its holder do, room by room: the `rooms` claim,
/// `{"subscribe": ["lobby", "team-*"], "publish": ["team-*"]}`. History follows `subscribe`.
public struct RoomGrants: Sendable, Equatable, Codable {
    public var subscribe: [RoomPattern]
    public var publish: [RoomPattern]

    public init(subscribe: [RoomPattern] = [], publish: [RoomPattern] = []) {
        self.subscribe = subscribe
        self.publish = publish
    }

    public func allows(_ action: AccessAction, in room: RoomName) -> Bool {
        switch action {
        case .subscribe: subscribe.matches(room)
        case .publish: publish.matches(room)
        }
    }

    private enum CodingKeys: String, CodingKey {
        case subscribe, publish
    }

    /// Each list is absent (nothing granted) or an array of patterns; one pattern that does not
    /// parse makes the whole token malformed rather than silently granting less.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func patterns(_ key: CodingKeys) throws -> [RoomPattern] {
            let texts = try container.decodeIfPresent([String].self, forKey: key) ?? []
            guard texts.count <= Self.maxPatterns else {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: container, debugDescription: "more than \(Self.maxPatterns) room patterns")
            }
            return try texts.map { text in
                guard let pattern = RoomPattern(text) else {
                    throw DecodingError.dataCorruptedError(
                        forKey: key, in: container, debugDescription: "not a room pattern: \(text.prefix(80))")
                }
                return pattern
            }
        }
        subscribe = try patterns(.subscribe)
        publish = try patterns(.publish)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(subscribe.map(\.description), forKey: .subscribe)
        try container.encode(publish.map(\.description), forKey: .publish)
    }

    /// The most patterns per list a token may carry: matching is linear in them.
    public static let maxPatterns = 100
}

/// What a request does to a room.
public enum AccessAction: String, Sendable {
    /// Read it: open a stream, or fetch its history.
    case subscribe
    /// Post a message to it.
    case publish
}

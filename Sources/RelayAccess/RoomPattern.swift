import ChatRelay

/// A room name or a prefix of room names, as a token's grants and `--public-rooms` give them:
/// `team-a` is that room only, `team-*` every room whose name starts with `team-`, `*` every room.
public struct RoomPattern: Sendable, Hashable, CustomStringConvertible {
    /// The name, or the prefix when `isPrefix`.
    public let text: String
    /// Ends in `*`: matches every room whose name starts with `text`.
    public let isPrefix: Bool

    /// Nil unless `pattern` is a room name, optionally ending in `*`, or `*` alone.
    public init?(_ pattern: some StringProtocol) {
        if pattern.hasSuffix("*") {
            let prefix = pattern.dropLast()
            // The prefix of a room name: the name rule's characters, shorter than its limit.
            guard prefix.isEmpty || RoomName(prefix) != nil else { return nil }
            text = String(prefix)
            isPrefix = true
        } else {
            guard let room = RoomName(pattern) else { return nil }
            text = room.value
            isPrefix = false
        }
    }

    public func matches(_ room: RoomName) -> Bool {
        isPrefix ? room.value.hasPrefix(text) : room.value == text
    }

    public var description: String { isPrefix ? text + "*" : text }
}

extension Sequence where Element == RoomPattern {
    /// True if any of the patterns matches `room`.
    public func matches(_ room: RoomName) -> Bool {
        contains { $0.matches(room) }
    }
}

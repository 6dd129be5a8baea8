/// A POST's `Idempotency-Key` as a broker keeps it: the poster's own, for one room, tied to what
/// was posted.
///
/// A key belongs to who posted it (`poster`: the token's `sub`, or a claimed `user` and the
/// client's address), so nobody else can read a message through it or squat it before its
/// owner. And it stands for one message: a retry must post the same thing (`fingerprint`), else
/// it is refused (`PublishOutcome.keyReused`) rather than answered with another message.
public struct Idempotency: Sendable, Hashable {
    /// The key as stored: the poster's scope and the client's key, joined so that no two pairs
    /// give the same string (the scope's length comes first).
    public let key: String
    /// What the first POST under the key stored: its room, user, name and text.
    public let fingerprint: UInt64

    /// - Parameters:
    ///   - key: the client's `Idempotency-Key`.
    ///   - poster: who posts, as the node tells posters apart.
    ///   - draft: the validated message.
    public init(key: String, poster: String, draft: MessageDraft) {
        self.key = "\(poster.utf8.count):\(poster) \(key)"
        self.fingerprint = Self.fingerprint(of: draft)
    }

    /// FNV-1a (64-bit) of the room, user, name and text, each ended by a NUL (which none of them
    /// may hold), and a mark for a message without a name. Not a defence against a poster who
    /// wants a collision: the key is that poster's own, so it could only hurt itself.
    static func fingerprint(of draft: MessageDraft) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func add(_ text: String) {
            for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
            hash = (hash ^ 0) &* 0x0000_0100_0000_01B3
        }
        add(draft.room.value)
        add(draft.user)
        if let name = draft.name { add(name) } else { hash = (hash ^ 0xFF) &* 0x0000_0100_0000_01B3 }
        add(draft.text)
        return hash
    }
}

/// What a broker remembers of a key's first message: its id and time, and the fingerprint of what
/// it said. With the retried draft (the same, by the fingerprint) that is the whole message: the
/// broker keeps about 40 bytes a key, not the message, which history may have dropped.
public struct IdempotencyRecord: Sendable, Equatable {
    public let id: MessageID
    public let timeMs: UInt64
    public let fingerprint: UInt64

    public init(id: MessageID, timeMs: UInt64, fingerprint: UInt64) {
        self.id = id
        self.timeMs = timeMs
        self.fingerprint = fingerprint
    }

    /// The answer to a POST of `draft` under the key: the first message again, or, if `draft`
    /// says something else, a refusal.
    public func outcome(for draft: MessageDraft, _ idempotency: Idempotency) -> PublishOutcome {
        guard idempotency.fingerprint == fingerprint else { return .keyReused }
        return .duplicate(
            StoredMessage(Message(id: id, room: draft.room, user: draft.user, name: draft.name, text: draft.text, timeMs: timeMs)))
    }

    /// What follows the id in the record a Redis key holds: `<time ms> <fingerprint, hex>`.
    public static func redisTail(timeMs: UInt64, fingerprint: UInt64) -> String {
        "\(timeMs) \(String(fingerprint, radix: 16))"
    }

    /// Reads a Redis record, `<id> <time ms> <fingerprint, hex>`; nil for anything else.
    public init?(redis bytes: some Collection<UInt8>) {
        let parts = bytes.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, let id = MessageID(String(decoding: parts[0], as: UTF8.self)),
            let timeMs = UInt64(String(decoding: parts[1], as: UTF8.self)),
            let fingerprint = UInt64(String(decoding: parts[2], as: UTF8.self), radix: 16)
        else { return nil }
        self.init(id: id, timeMs: timeMs, fingerprint: fingerprint)
    }
}

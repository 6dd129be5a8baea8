extension MessageDraft {
    /// The draft with both fields trimmed and checked against the spec's rules, or the first field error.
    ///
    /// - `user`: 1 to 32 characters after trimming white space, no control characters.
    /// - `text`: 1 byte up to `limits.maxTextBytes` of UTF-8 after trimming; no control characters
    ///   but newline and tab. CR LF and lone CR become LF first: browsers send a textarea's line
    ///   breaks as CR LF, and a person expects them to arrive as line breaks, not as an error.
    ///
    /// A verified `user` (from a token) is taken as it is.
    public func validated(limits: MessageLimits) throws(FieldError) -> MessageDraft {
        let user = userIsVerified ? self.user : try Self.validatedUser(self.user)

        let text = Self.trimmed(Self.normalizingLineBreaks(self.text))
        guard !text.isEmpty else { throw FieldError(field: "text", reason: "is missing or empty") }
        guard text.utf8.count <= limits.maxTextBytes else {
            throw FieldError(field: "text", reason: "is longer than \(limits.maxTextBytes) bytes of UTF-8")
        }
        guard !text.unicodeScalars.contains(where: { $0 != "\n" && $0 != "\t" && Self.isControl($0) }) else {
            throw FieldError(field: "text", reason: "contains control characters (only newline and tab are allowed)")
        }
        return MessageDraft(room: room, user: user, name: name, text: text, userIsVerified: userIsVerified)
    }

    /// A name a client claims (`user`): trimmed, 1 to 32 characters, no control characters.
    public static func validatedUser(_ claimed: String) throws(FieldError) -> String {
        let user = trimmed(claimed)
        guard !user.isEmpty else { throw FieldError(field: "user", reason: "is missing or empty") }
        guard user.count <= MessageLimits.maxUserCharacters else {
            throw FieldError(field: "user", reason: "is longer than \(MessageLimits.maxUserCharacters) characters")
        }
        guard !user.unicodeScalars.contains(where: isControl) else {
            throw FieldError(field: "user", reason: "contains control characters")
        }
        return user
    }

    /// Unicode general category Cc: U+0000–U+001F and U+007F–U+009F.
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

    static func trimmed(_ string: String) -> String {
        let scalars = string.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }

    static func normalizingLineBreaks(_ string: String) -> String {
        guard string.utf8.contains(UInt8(ascii: "\r")) else { return string }
        var result = String.UnicodeScalarView()
        var previousWasCR = false
        for scalar in string.unicodeScalars {
            if scalar == "\r" {
                result.append("\n")
                previousWasCR = true
                continue
            }
            if scalar == "\n" && previousWasCR {
                previousWasCR = false
                continue
            }
            previousWasCR = false
            result.append(scalar)
        }
        return String(result)
    }
}

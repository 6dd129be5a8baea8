import ChatRelay
import Testing

@Suite struct ValidationTests {
    let limits = MessageLimits(maxTextBytes: 16)

    func validate(user: String = "alice", text: String = "hi") throws(FieldError) -> MessageDraft {
        try MessageDraft(room: .lobby, user: user, text: text).validated(limits: limits)
    }

    func refusal(user: String = "alice", text: String = "hi") -> FieldError? {
        do {
            _ = try validate(user: user, text: text)
            return nil
        } catch {
            return error
        }
    }

    @Test func trimsBothFields() throws {
        let draft = try validate(user: "  bob \t", text: "\n  hello  \n")
        #expect(draft.user == "bob")
        #expect(draft.text == "hello")
    }

    @Test func userIsOneToThirtyTwoCharacters() throws {
        #expect(refusal(user: "")?.field == "user")
        #expect(refusal(user: "   ")?.field == "user")
        #expect(try validate(user: String(repeating: "u", count: 32)).user.count == 32)
        #expect(refusal(user: String(repeating: "u", count: 33))?.field == "user")
        // Characters, not bytes: 32 emoji (each several bytes) are allowed.
        #expect(try validate(user: String(repeating: "👩‍💻", count: 32)).user.count == 32)
    }

    @Test(arguments: ["a\u{0}b", "a\u{7}b", "a\nb", "a\tb", "a\u{7F}b", "a\u{85}b", "a\u{1B}[31mb"])
    func userRefusesControlCharacters(user: String) {
        #expect(refusal(user: user)?.field == "user")
    }

    @Test func textIsOneByteUpToTheLimit() throws {
        #expect(refusal(text: "")?.field == "text")
        #expect(refusal(text: " \n\t ")?.field == "text")
        #expect(try validate(text: "x").text == "x")
        #expect(try validate(text: String(repeating: "x", count: 16)).text.utf8.count == 16)
        #expect(refusal(text: String(repeating: "x", count: 17))?.field == "text")
        // Bytes of UTF-8, not characters: 4 × "€" is 12 bytes, 6 × "€" is 18.
        #expect(try validate(text: String(repeating: "€", count: 4)).text.utf8.count == 12)
        #expect(refusal(text: String(repeating: "€", count: 6))?.field == "text")
    }

    @Test func textKeepsNewlinesAndTabsAndNormalizesCarriageReturns() throws {
        #expect(try validate(text: "a\nb\tc").text == "a\nb\tc")
        #expect(try validate(text: "a\r\nb\rc").text == "a\nb\nc")
    }

    @Test(arguments: ["a\u{0}b", "a\u{7}b", "a\u{1B}b", "a\u{7F}b", "a\u{9F}b", "a\u{8}b"])
    func textRefusesOtherControlCharacters(text: String) {
        #expect(refusal(text: text)?.field == "text")
    }

    @Test func textAllowsLineSeparatorsEmojiAndFieldLookalikes() throws {
        for text in ["a\u{2028}b", "😀👍🏽", "data: x", "id: 1", "event: reset", "<b>x</b>"] {
            #expect(try validate(text: text).text == text)
        }
    }
}

import NIOCore
import Testing

@testable import ChatRelay

/// A verified author's display name in a message's JSON, and a verified `user` kept as given.
@Suite struct MessageNameTests {
    @Test func theNameFollowsTheUserOnlyWhenThereIsOne() {
        let plain = Message(id: MessageID(ms: 5, seq: 0), room: .lobby, user: "a", text: "t", timeMs: 0)
        #expect(String(buffer: plain.json()).contains(#""user":"a","text":"t""#))
        let named = Message(id: MessageID(ms: 5, seq: 0), room: .lobby, user: "auth0|42", name: "Ann \"A\"", text: "t", timeMs: 0)
        #expect(String(buffer: named.json()).contains(#""user":"auth0|42","name":"Ann \"A\"","text":"t""#))
    }

    @Test func aVerifiedUserSkipsTheRulesForNamesAClientPicks() throws {
        let long = String(repeating: "s", count: 100)
        #expect(throws: FieldError.self) { try MessageDraft(room: .lobby, user: long, text: "t").validated(limits: MessageLimits()) }
        let verified = try MessageDraft(room: .lobby, user: long, name: "N", text: " t ", userIsVerified: true).validated(
            limits: MessageLimits())
        #expect(verified.user == long && verified.name == "N" && verified.text == "t")
    }
}

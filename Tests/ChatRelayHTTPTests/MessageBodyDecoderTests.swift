import ChatRelayHTTP
import NIOCore
import Testing

@Suite struct MessageBodyDecoderTests {
    func decode(_ body: [UInt8], _ type: MessageBodyDecoder.MediaType) throws -> (user: String, text: String) {
        try MessageBodyDecoder.decode(ByteBuffer(bytes: body), as: type)
    }

    func errorCode(_ body: [UInt8], _ type: MessageBodyDecoder.MediaType) -> String? {
        do {
            _ = try decode(body, type)
            return nil
        } catch let error as APIError {
            return error.code
        } catch {
            return "unexpected \(error)"
        }
    }

    @Test func mediaTypes() {
        #expect(MessageBodyDecoder.MediaType(contentType: "application/json") == .json)
        #expect(MessageBodyDecoder.MediaType(contentType: "Application/JSON; charset=UTF-8") == .json)
        #expect(MessageBodyDecoder.MediaType(contentType: "application/x-www-form-urlencoded;charset=utf-8") == .form)
        #expect(MessageBodyDecoder.MediaType(contentType: "text/plain") == nil)
        #expect(MessageBodyDecoder.MediaType(contentType: "multipart/form-data; boundary=x") == nil)
        #expect(MessageBodyDecoder.MediaType(contentType: "application/json; charset=latin1") == nil)
        #expect(MessageBodyDecoder.MediaType(contentType: nil) == nil)
        #expect(MessageBodyDecoder.MediaType(contentType: " application/json ;\tcharset=\"utf-8\" ") == .json)
        #expect(MessageBodyDecoder.MediaType(contentType: "APPLICATION/JSON;CHARSET=UTF8;foo=bar") == .json)
        #expect(MessageBodyDecoder.MediaType(contentType: "application/jsonx") == nil)
        #expect(MessageBodyDecoder.MediaType(contentType: "application/json; charset=\"") == nil)
        #expect(MessageBodyDecoder.MediaType(contentType: "") == nil)
    }

    @Test func json() throws {
        let fields = try decode(Array(#"{"user":"al\u00e9","text":"a\nb","extra":1}"#.utf8), .json)
        #expect(fields.user == "alé")
        #expect(fields.text == "a\nb")
        #expect(try decode(Array(#"{"user":"a"}"#.utf8), .json).text == "")
        // null is no value, as a missing field (validation asks for it).
        #expect(try decode(Array(#"{"user":"a","text":null}"#.utf8), .json).text == "")
        #expect(try decode(Array(#"{"nested":{"a":[1,{"b":null}]},"user":"a","text":"t"}"#.utf8), .json).text == "t")
    }

    /// Bodies the byte-level reader takes and bodies it leaves to `JSONDecoder` decode alike:
    /// escapes of every kind, surrogate pairs, white space, other fields of any type, repeats.
    @Test(arguments: [
        (#"{"user":"bench","text":"bench seq=1 t=2"}"#, "bench", "bench seq=1 t=2"),
        (" \n{ \"text\" : \"t\" ,\r\n\t\"user\":\"u\" } \n", "u", "t"),
        (#"{"user":"\"q\" \\ \/ \b\f\n\r\t","text":"é\u00e9\u20AC\ud83d\ude00"}"#, "\"q\" \\ / \u{08}\u{0C}\n\r\t", "éé€😀"),
        (#"{"user":"u","text":"t","seq":5,"meta":{"a":[1,"}"]},"ok":true,"none":null}"#, "u", "t"),
        (#"{"id":"x","user":"u"}"#, "u", ""),
        (#"{}"#, "", ""),
        (#"{"us\u0065r":"escaped key","text":"t"}"#, "escaped key", "t"),
    ])
    func jsonOfEveryShapeDecodesAlike(body: String, user: String, text: String) throws {
        let fields = try decode(Array(body.utf8), .json)
        #expect(fields.user == user)
        #expect(fields.text == text)
    }

    /// What the byte-level reader takes, and what it leaves to `JSONDecoder`.
    @Test func theFlatReaderTakesOnlyFlatObjectsOfStrings() {
        func flat(_ body: String) -> Bool { MessageBodyDecoder.flatStringFields(ByteBuffer(string: body).readableBytesView) != nil }
        #expect(flat(#"{"user":"u","text":"t"}"#))
        #expect(flat(#"{"user":"\ud83d\ude00","text":""}"#))
        #expect(!flat(#"{"user":"u","text":5}"#))
        #expect(!flat(#"{"user":"u","user":"v"}"#))
        #expect(!flat(#"{"user":"\ud83d","text":"lone high surrogate"}"#))
        #expect(!flat(#"{"user":"\ude00","text":"lone low surrogate"}"#))
        #expect(!flat(#"{"user":"\x","text":"bad escape"}"#))
        #expect(!flat("{\"user\":\"a\tb\",\"text\":\"raw tab\"}"))
        #expect(!flat(#"{"user":"u","text":"t"} x"#))
        #expect(!flat(#"{"user":"u","text":"t",}"#))
        #expect(!flat(#"{"user":"u" "text":"t"}"#))
        #expect(!flat(#"["user","u"]"#))
        #expect(!flat(#"{"user":"unterminated}"#))
        #expect(!flat(#"{"user":"u\"#))
    }

    @Test func badJSON() {
        #expect(errorCode(Array("{".utf8), .json) == "invalid_body")
        #expect(errorCode(Array("[1]".utf8), .json) == "invalid_body")
        #expect(errorCode(Array("\"x\"".utf8), .json) == "invalid_body")
        #expect(errorCode([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D], .json) == "invalid_body")  // {"\xFF":1}
        #expect(errorCode(Array(#"{"user":5,"text":"t"}"#.utf8), .json) == "invalid_field")
        #expect(errorCode(Array(#"{"user":"u","text":["t"]}"#.utf8), .json) == "invalid_field")
        #expect(errorCode(Array(#"{"user":"u","text":"t"} x"#.utf8), .json) == "invalid_body")
        #expect(errorCode(Array("".utf8), .json) == "invalid_body")
    }

    @Test func form() throws {
        let fields = try decode(Array("user=bob+b&text=hello%20w%C3%B6rld%0Aline&x=1".utf8), .form)
        #expect(fields.user == "bob b")
        #expect(fields.text == "hello wörld\nline")
        #expect(errorCode(Array("user=a&text=%FF".utf8), .form) == "invalid_body")
        #expect(errorCode(Array("user=a&text=%G1".utf8), .form) == "invalid_body")
    }
}

import NIOHTTP1
import Testing

@testable import ChatRelayHTTP

/// What a request presents to say who it is, read from its head in the documented order.
@Suite struct CredentialsTests {
    func credentials(_ headers: [(String, String)], ticket: String? = nil) -> Credentials {
        Credentials(
            head: HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: HTTPHeaders(headers)), ticket: ticket,
            cookieName: "chat_relay_token", overTLS: false)
    }

    func token(_ credentials: Credentials) -> String? {
        switch credentials.presented {
        case .bearer(let token), .cookie(let token), .ticket(let token): token
        case .none, .unreadable: nil
        }
    }

    @Test func bearerThenCookieThenTicket() {
        let all = credentials([("Authorization", "Bearer h.p.s"), ("Cookie", "chat_relay_token=c.p.s")], ticket: "t")
        guard case .bearer("h.p.s") = all.presented else {
            Issue.record("\(all.presented)")
            return
        }
        let cookieAndTicket = credentials([("Cookie", "a=1; chat_relay_token=c.p.s; b=2")], ticket: "t")
        guard case .cookie("c.p.s") = cookieAndTicket.presented else {
            Issue.record("\(cookieAndTicket.presented)")
            return
        }
        let ticketOnly = credentials([], ticket: "t")
        guard case .ticket("t") = ticketOnly.presented else {
            Issue.record("\(ticketOnly.presented)")
            return
        }
        guard case .none = credentials([]).presented else {
            Issue.record("nothing presented")
            return
        }
    }

    @Test func theBearerSchemeInAnyCaseAndNothingElse() {
        #expect(token(credentials([("Authorization", "bearer  x.y.z ")])) == "x.y.z")
        #expect(token(credentials([("Authorization", "BEARER x.y.z")])) == "x.y.z")
        for value in ["Basic dTpw", "Bearer", "Bearer ", "x.y.z"] {
            guard case .unreadable = credentials([("Authorization", value)]).presented else {
                Issue.record("\(value) should be unreadable")
                continue
            }
        }
    }

    @Test func cookiesByExactNameOnAnyLine() {
        #expect(Credentials.cookie(named: "chat_relay_token", in: ["other_chat_relay_token=no", "chat_relay_token=\"q.u.o\""]) == "q.u.o")
        #expect(Credentials.cookie(named: "chat_relay_token", in: ["chat_relay_tokenx=no"]) == nil)
        #expect(Credentials.cookie(named: "chat_relay_token", in: ["chat_relay_token="]) == nil)
    }

    @Test func aCookieActsOnlyForNamedOriginsOrTheNodesOwn() {
        let cors = CORSPolicy(allowOrigins: ["https://chat.example", "*"], credentials: true)
        func may(_ origin: String?, host: String = "relay.example:8080", cors: CORSPolicy? = cors) -> Bool {
            var headers = [("Host", host)]
            if let origin { headers.append(("Origin", origin)) }
            return credentials(headers).originMayUseCookie(cors: cors)
        }
        #expect(may("https://chat.example"))
        #expect(may("http://relay.example:8080"))
        #expect(may("https://relay.example:8080"))
        #expect(!may("https://evil.example"), "* allows reading, never a cookie's POST")
        #expect(!may(nil))
        #expect(!may("https://chat.example", cors: nil))
    }
}

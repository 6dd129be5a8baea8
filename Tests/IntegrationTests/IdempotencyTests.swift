import Foundation
import TestSupport
import Testing

/// An `Idempotency-Key` is its poster's, and stands for one message: on both brokers, another
/// user re-sending someone's key gets a message of their own, never the other's; a key squatted
/// first does not swallow its owner's message; the same key with another body is `422`.
@Suite struct IdempotencyTests {
    static func post(_ node: RelayProcess, room: String, token: String? = nil, user: String = "u", text: String, key: String) async throws
        -> HTTP.Reply
    {
        try await HTTP.postMessage(
            "\(node.baseURL)/rooms/\(room)/messages", user: user, text: text,
            headers: [("Idempotency-Key", key)] + (token.map { [("Authorization", "Bearer \($0)")] } ?? []))
    }

    @Test(arguments: ["embedded", "redis"])
    func anotherUsersKeyNeitherReadsNorSwallowsTheirMessage(broker: String) async throws {
        let (node, redis) = try await NodeAbuseTests.node(
            on: broker, ["--auth", "jwt", "--jwt-secret-file", try AccessControlTests.secretFile(), "--rate-limit", "0"])
        defer {
            node.kill()
            redis?.killNow()
        }
        let alice = try await AccessControlTests.token("alice", subscribe: ["vault"], publish: ["vault"])
        // Eve may post in the vault but not read it.
        let eve = try await AccessControlTests.token("eve", subscribe: [], publish: ["vault"])

        let secret = try await Self.post(node, room: "vault", token: alice, text: "the combination is 4-8-15", key: "k-1")
        #expect(secret.status == 201)
        let replayed = try await Self.post(node, room: "vault", token: eve, text: "anything", key: "k-1")
        #expect(replayed.status == 201, "eve's own message, stored: \(replayed.body)")
        #expect(!replayed.body.contains("combination"))
        #expect(replayed.json["user"] as? String == "eve")

        // Eve takes a key first; Alice's later POST with it is hers, and stored.
        #expect(try await Self.post(node, room: "vault", token: eve, text: "squatted", key: "k-2").status == 201)
        let own = try await Self.post(node, room: "vault", token: alice, text: "mine", key: "k-2")
        #expect(own.status == 201)
        #expect(own.json["text"] as? String == "mine")
        // Her retry gets her message back.
        let retry = try await Self.post(node, room: "vault", token: alice, text: "mine", key: "k-2")
        #expect(retry.status == 200)
        #expect(retry.body == own.body)
        let history = try await HTTP.get("\(node.baseURL)/rooms/vault/messages", headers: AccessControlTests.bearer(alice))
        #expect(
            (history.json["messages"] as? [[String: Any]])?.compactMap { $0["text"] as? String }.sorted()
                == ["anything", "mine", "squatted", "the combination is 4-8-15"])
    }

    @Test(arguments: ["embedded", "redis"])
    func theSameKeyWithAnotherBodyIs422AndStoresNothing(broker: String) async throws {
        let (node, redis) = try await NodeAbuseTests.node(on: broker, ["--rate-limit", "0"])
        defer {
            node.kill()
            redis?.killNow()
        }
        let first = try await Self.post(node, room: "r", user: "ann", text: "one", key: "k")
        #expect(first.status == 201)
        let changed = try await Self.post(node, room: "r", user: "ann", text: "two", key: "k")
        #expect(changed.status == 422)
        #expect(changed.json["error"] as? String == "idempotency_key_reused")
        let retry = try await Self.post(node, room: "r", user: "ann", text: "one", key: "k")
        #expect(retry.status == 200)
        #expect(retry.body == first.body)
        // Without tokens a key is the claimed user's at the client's address: another name (or
        // another address) is another poster.
        let bob = try await Self.post(node, room: "r", user: "bob", text: "two", key: "k")
        #expect(bob.status == 201)
        let socket = try RawSocket(port: node.port, from: "127.0.0.9", receiveBuffer: 65536)
        let body = #"{"user":"ann","text":"three"}"#
        try socket.send(
            "POST /rooms/r/messages HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nIdempotency-Key: k\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        )
        let elsewhere = await socket.receive(until: { $0.contains("}") }, timeout: .seconds(10))
        #expect(elsewhere.hasPrefix("HTTP/1.1 201"), "\(elsewhere)")
        let history = try await HTTP.get("\(node.baseURL)/rooms/r/messages")
        #expect((history.json["messages"] as? [[String: Any]])?.compactMap { $0["text"] as? String } == ["one", "two", "three"])
    }
}

import ChatRelay
import Foundation
import JWTKit
import TestSupport
import Testing

@testable import RelayAccess

/// `chat-relay token`'s minter against the node's verifier, and the cache of verified tokens.
@Suite struct TokenMinterAndCacheTests {
    static let grants = RoomGrants(subscribe: [RoomPattern("team-*")!], publish: [RoomPattern("team-a")!])

    @Test func mintedTokensVerifyWithTheMatchingKeyOnly() async throws {
        let secret = Array(String(repeating: "s", count: 64).utf8)
        let hmac = try await TokenMinter(secret: secret, algorithm: "HS384")
        var keys = VerificationKeys()
        try await keys.addSecret(secret, algorithm: "HS384")
        let identity = try await TokenVerifier(keys: keys).verify(
            try await hmac.mint(subject: "ann", name: "Ann", grants: Self.grants, lifetime: .seconds(60)))
        #expect(identity.subject == "ann" && identity.name == "Ann" && identity.grants == Self.grants)

        let rsa = try await TokenMinter(privateKeyPEM: RSATestKey.privatePEM)
        #expect(rsa.algorithm == "RS256")
        let ed = try await TokenMinter(privateKeyPEM: EdDSATestKey.privatePEM)
        #expect(ed.algorithm == "EdDSA")
        var publicKeys = VerificationKeys()
        try await publicKeys.addPublicKey(pem: RSATestKey.publicPEM)
        try await publicKeys.addPublicKey(pem: EdDSATestKey.publicPEM)
        let verifier = TokenVerifier(keys: publicKeys)
        for minter in [rsa, ed] {
            let token = try await minter.mint(subject: "bo", grants: Self.grants, lifetime: .seconds(60), issuer: "i", audience: "a")
            #expect(try await verifier.verify(token).subject == "bo")
        }
        // The HMAC token against the public keys: no key for HS384.
        await #expect(throws: AuthFailure.self) {
            try await verifier.verify(try await hmac.mint(subject: "x", grants: Self.grants, lifetime: .seconds(60)))
        }
        await #expect(throws: KeyError.self) { try await TokenMinter(privateKeyPEM: RSATestKey.publicPEM) }
    }

    @Test func theCacheServesATokenUntilItExpiresAndStaysBounded() {
        let cache = VerifiedTokenCache(capacity: 2)
        let identity = Identity(subject: "a", name: nil, grants: Self.grants, expiresAt: 100)
        cache.store("t1", identity)
        #expect(cache.identity(of: "t1", now: 99, leeway: 0) == identity)
        #expect(cache.identity(of: "t1", now: 100, leeway: 0) == nil, "expired: verified again, and refused")
        #expect(cache.identity(of: "t1", now: 110, leeway: 30) == identity, "within the leeway, as the verifier")
        for index in 2...7 { cache.store("t\(index)", identity) }
        #expect(cache.count <= 4, "two generations of two")
        #expect(cache.identity(of: "t1", now: 0, leeway: 0) == nil, "the oldest aged out")
        #expect(cache.identity(of: "t7", now: 0, leeway: 0) == identity)
    }

    @Test func aCachedTokenStillExpiresAtTheVerifier() async throws {
        let secret = Array(String(repeating: "k", count: 32).utf8)
        var keys = VerificationKeys()
        try await keys.addSecret(secret, algorithm: "HS256")
        let verifier = TokenVerifier(keys: keys, checks: .init(leeway: .zero))
        let token = try await TokenMinter(secret: secret, algorithm: "HS256").mint(
            subject: "c", grants: Self.grants, lifetime: .seconds(60))
        let now = Date().timeIntervalSince1970
        _ = try await verifier.verify(token, now: now)
        #expect(verifier.cache.count == 1)
        await #expect(throws: AuthFailure.self) { try await verifier.verify(token, now: now + 61) }
    }
}

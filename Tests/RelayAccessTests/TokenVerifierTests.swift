import ChatRelay
import Foundation
import JWTKit
import TestSupport
import Testing

@testable import RelayAccess

/// Tokens signed here with jwt-kit, verified by the node's verifier: every way in, and every way
/// a token is refused, with its reason.
@Suite struct TokenVerifierTests {
    static let secret = Array("a secret of sixty-four bytes, enough for HS512 as well as HS256..".utf8)
    static let now = 1_800_000_000.0

    struct Claims: JWTPayload {
        var sub: SubjectClaim?
        var name: String?
        var exp: ExpirationClaim?
        var nbf: NotBeforeClaim?
        var iss: IssuerClaim?
        var aud: AudienceClaim?
        var rooms: [String: [String]]?
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static func claims(
        sub: String? = "alice", exp: Double? = now + 600, rooms: [String: [String]]? = ["subscribe": ["lobby", "team-*"]]
    ) -> Claims {
        Claims(
            sub: sub.map { SubjectClaim(value: $0) }, name: "Alice",
            exp: exp.map { ExpirationClaim(value: Date(timeIntervalSince1970: $0)) },
            rooms: rooms)
    }

    static func hmacToken(_ claims: Claims, digest: DigestAlgorithm = .sha256, secret: [UInt8] = secret) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: digest)
        return try await keys.sign(claims)
    }

    static func hmacVerifier(algorithm: String = "HS256", checks: TokenVerifier.Checks = .init()) async throws -> TokenVerifier {
        var keys = VerificationKeys()
        try await keys.addSecret(secret, algorithm: algorithm)
        return TokenVerifier(keys: keys, checks: checks)
    }

    static func failure(_ verifier: TokenVerifier, _ token: String) async -> AuthFailure.Reason? {
        do {
            _ = try await verifier.verify(token, now: now)
            return nil
        } catch {
            return error.reason
        }
    }

    @Test func anHMACTokenGivesItsIdentityAndGrants() async throws {
        let verifier = try await Self.hmacVerifier()
        let identity = try await verifier.verify(try await Self.hmacToken(Self.claims()), now: Self.now)
        #expect(identity.subject == "alice")
        #expect(identity.name == "Alice")
        #expect(identity.expiresAt == Self.now + 600)
        #expect(identity.allows(.subscribe, in: RoomName("team-blue")!))
        #expect(identity.allows(.subscribe, in: .lobby))
        #expect(!identity.allows(.subscribe, in: RoomName("teams")!))
        #expect(!identity.allows(.publish, in: .lobby))
    }

    @Test func theAlgorithmIsTheConfigurationsNotTheTokens() async throws {
        let verifier = try await Self.hmacVerifier(algorithm: "HS256")
        // Signed with the right secret, but HS512: this node takes HS256 only.
        #expect(await Self.failure(verifier, try await Self.hmacToken(Self.claims(), digest: .sha512)) == .algorithm)
        // alg: none, no signature.
        let header = Data(#"{"alg":"none","typ":"JWT"}"#.utf8).base64URLEncodedString()
        let payload = Data(#"{"sub":"mallory","exp":1900000000}"#.utf8).base64URLEncodedString()
        #expect(await Self.failure(verifier, "\(header).\(payload).") == .algorithm)
        // A wrong secret.
        let forged = try await Self.hmacToken(
            Self.claims(), secret: Array(String(repeating: "another secret, long enough. ", count: 3).utf8))
        #expect(await Self.failure(verifier, forged) == .signature)
    }

    @Test func anHMACTokenSignedWithTheNodesPublicKeyIsRefused() async throws {
        // The classic confusion: the attacker takes the node's RSA public key (public, after all)
        // as an HMAC secret and signs HS256. The node has no HMAC key: no key for HS256.
        let privateKey = try Insecure.RSA.PrivateKey(pem: RSATestKey.privatePEM)
        var keys = VerificationKeys()
        #expect(try await keys.addPublicKey(pem: RSATestKey.publicPEM) == "RS256")
        let verifier = TokenVerifier(keys: keys)
        let signer = JWTKeyCollection()
        await signer.add(rsa: privateKey, digestAlgorithm: .sha256)
        let good = try await signer.sign(Self.claims())
        #expect(try await verifier.verify(good, now: Self.now).subject == "alice")
        let confused = try await Self.hmacToken(Self.claims(), secret: Array(RSATestKey.publicPEM.utf8))
        #expect(await Self.failure(verifier, confused) == .algorithm)
    }

    @Test func ecdsaAndEdDSAPublicKeysVerifyTheirOwnAlgorithmOnly() async throws {
        let ecPrivate = ES256PrivateKey()
        let edPrivate = try EdDSA.PrivateKey(pem: EdDSATestKey.privatePEM)
        var keys = VerificationKeys()
        #expect(try await keys.addPublicKey(pem: ecPrivate.publicKey.pemRepresentation) == "ES256")
        #expect(try await keys.addPublicKey(pem: EdDSATestKey.publicPEM) == "EdDSA")
        let verifier = TokenVerifier(keys: keys)
        let ec = JWTKeyCollection()
        await ec.add(ecdsa: ecPrivate)
        let ed = JWTKeyCollection()
        await ed.add(eddsa: edPrivate)
        #expect(try await verifier.verify(try await ec.sign(Self.claims()), now: Self.now).subject == "alice")
        #expect(try await verifier.verify(try await ed.sign(Self.claims()), now: Self.now).subject == "alice")
        // Another EC key: the signature does not verify.
        let stranger = JWTKeyCollection()
        await stranger.add(ecdsa: ES256PrivateKey())
        #expect(await Self.failure(verifier, try await stranger.sign(Self.claims())) == .signature)
    }

    @Test func expiryNotBeforeIssuerAudienceAndLeeway() async throws {
        let verifier = try await Self.hmacVerifier(checks: .init(issuer: "https://id.example", audience: "chat", leeway: .seconds(30)))
        var claims = Self.claims()
        claims.iss = "https://id.example"
        claims.aud = "chat"
        #expect(await Self.failure(verifier, try await Self.hmacToken(claims)) == nil)

        var expired = claims
        expired.exp = ExpirationClaim(value: Date(timeIntervalSince1970: Self.now - 31))
        #expect(await Self.failure(verifier, try await Self.hmacToken(expired)) == .expired)
        var withinLeeway = claims
        withinLeeway.exp = ExpirationClaim(value: Date(timeIntervalSince1970: Self.now - 29))
        #expect(await Self.failure(verifier, try await Self.hmacToken(withinLeeway)) == nil)

        var early = claims
        early.nbf = NotBeforeClaim(value: Date(timeIntervalSince1970: Self.now + 31))
        #expect(await Self.failure(verifier, try await Self.hmacToken(early)) == .notYetValid)

        var otherIssuer = claims
        otherIssuer.iss = "https://evil.example"
        #expect(await Self.failure(verifier, try await Self.hmacToken(otherIssuer)) == .issuer)
        var otherAudience = claims
        otherAudience.aud = "billing"
        #expect(await Self.failure(verifier, try await Self.hmacToken(otherAudience)) == .audience)
    }

    @Test func malformedTokensAndClaims() async throws {
        let verifier = try await Self.hmacVerifier()
        #expect(await Self.failure(verifier, "not-a-jwt") == .malformed)
        #expect(await Self.failure(verifier, String(repeating: "a", count: 9000)) == .malformed)
        #expect(await Self.failure(verifier, try await Self.hmacToken(Self.claims(sub: nil))) == .malformed)
        #expect(await Self.failure(verifier, try await Self.hmacToken(Self.claims(exp: nil))) == .malformed)
        // A grant that is not a room pattern makes the token malformed, not quietly narrower.
        #expect(await Self.failure(verifier, try await Self.hmacToken(Self.claims(rooms: ["subscribe": ["no spaces"]]))) == .malformed)
        // No grants at all: valid, and allowed nothing.
        let bare = try await verifier.verify(try await Self.hmacToken(Self.claims(rooms: nil)), now: Self.now)
        #expect(!bare.allows(.subscribe, in: .lobby))
    }

    /// Only the one spelling of a token is taken: base64url parts without padding, two dots.
    @Test func aTokenWithPaddingOrOtherBytesIsMalformed() async throws {
        let verifier = try await Self.hmacVerifier()
        let token = try await Self.hmacToken(Self.claims())
        #expect(try await verifier.verify(token, now: Self.now).subject == "alice")
        let parts = token.split(separator: ".").map(String.init)
        for variant in [
            token + "=", token + "==", parts[0] + "=." + parts[1] + "." + parts[2], token + " ", " " + token,
            token.replacingOccurrences(of: "-", with: "+"), token + ".", parts[0] + "." + parts[1], token + "%3D",
        ] where variant != token {
            #expect(await Self.failure(verifier, variant) == .malformed, "\(variant)")
        }
    }

    /// Signed tokens whose claims take every value a JSON number or string may: each is an
    /// identity or a refusal with its reason, never a trap (an `exp` of 9.3e15 once trapped a
    /// conversion further on).
    @Test func signedTokensWithClaimsOfAnyValueAreReadOrRefused() async throws {
        let verifier = try await Self.hmacVerifier()
        let numbers: [Double?] = [
            nil, 0, -1, -1e300, 1e300, 9.3e15, Self.now, Self.now + 1, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
        ]
        let texts: [String?] = [nil, "", " ", "a", String(repeating: "é", count: 300), "\u{0}", "eve reason=forged", "\u{202E}"]
        var random = SystemRandomNumberGenerator()
        var identities = 0
        for _ in 0..<300 {
            var claims = Self.claims(
                sub: texts.randomElement(using: &random)!, exp: numbers.randomElement(using: &random)!,
                rooms: [nil, [:], ["subscribe": ["*"]], ["publish": ["", "a*b*"]], ["x": ["y"]]].randomElement(using: &random)!)
            claims.name = texts.randomElement(using: &random)!
            claims.nbf = numbers.randomElement(using: &random)!.map { NotBeforeClaim(value: Date(timeIntervalSince1970: $0)) }
            let token = try await Self.hmacToken(claims)
            do throws(AuthFailure) {
                let identity = try await verifier.verify(token, now: Self.now)
                identities += 1
                #expect(identity.expiresAt > Self.now - 60)
            } catch {
                #expect(!error.detail.isEmpty)
            }
        }
        #expect(identities > 0)
    }

    @Test func shortHMACSecretsAndUnknownPEMAreRefusedAtStart() async {
        var keys = VerificationKeys()
        await #expect(throws: KeyError.self) { try await keys.addSecret(Array("short".utf8), algorithm: "HS256") }
        await #expect(throws: KeyError.self) { try await keys.addSecret(Self.secret, algorithm: "RS256") }
        await #expect(throws: KeyError.self) {
            try await keys.addPublicKey(pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
        }
    }

    @Test func roomPatterns() {
        #expect(RoomPattern("lobby")!.matches(.lobby))
        #expect(!RoomPattern("lobby")!.matches(RoomName("lobby2")!))
        #expect(RoomPattern("team-*")!.matches(RoomName("team-")!))
        #expect(RoomPattern("*")!.matches(RoomName("anything")!))
        #expect(RoomPattern("a b") == nil)
        #expect(RoomPattern("te*m") == nil)
        #expect(RoomPattern("") == nil)
    }

    @Test func ticketsAreRandomWellFormedAndCarryTheIdentity() {
        let first = StreamTicket.make()
        #expect(StreamTicket.isWellFormed(first))
        #expect(first != StreamTicket.make())
        #expect(!StreamTicket.isWellFormed(first + "x"))
        #expect(!StreamTicket.isWellFormed(String(first.dropLast()) + "!"))
        let identity = Identity(
            subject: "alice", name: nil, grants: RoomGrants(subscribe: [RoomPattern("team-*")!]), expiresAt: Self.now)
        #expect(StreamTicket.decode(StreamTicket.encode(identity)) == identity)
    }
}

extension Data {
    func base64URLEncodedString() -> String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

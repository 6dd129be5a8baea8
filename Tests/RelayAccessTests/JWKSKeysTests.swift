import Foundation
import JWTKit
import Testing

@testable import RelayAccess

/// A JWKS is read key by key: keys the node cannot verify with (an EC key on secp256k1, an X25519
/// encryption key, an unknown type, broken values, a key for encryption) are skipped with why,
/// and the signing keys beside them still verify.
@Suite struct JWKSKeysTests {
    struct Claims: JWTPayload {
        var sub: SubjectClaim
        var exp: ExpirationClaim
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    @Test func keysThatCannotVerifyAreSkippedAndTheRestKept() async throws {
        let signing = ES256PrivateKey()
        let parameters = try #require(signing.publicKey.parameters)
        let document: [[String: Any]] = [
            [
                "kty": "EC", "crv": "secp256k1", "kid": "k256", "x": "WfY7Px6AgH6x-_dgAoRbg8weYRJA36ON-gQ3ci5ozL0",
                "y": "ZmV5bVtGgqZOChSv1DiX05GKoaUX1bB8tPsCE0rZ2sM",
            ],
            ["kty": "OKP", "crv": "X25519", "kid": "enc-x", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"],
            ["kty": "XYZ", "kid": "future"],
            ["kty": "RSA", "kid": "broken", "n": "!!!", "e": "AQAB"],
            ["kty": "EC", "crv": "P-256", "kid": "encryption", "use": "enc", "x": parameters.x, "y": parameters.y],
            ["kty": "EC", "crv": "P-256", "x": parameters.x, "y": parameters.y],
            ["not": "a key"],
            ["kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "good", "x": parameters.x, "y": parameters.y],
        ]
        let data = try JSONSerialization.data(withJSONObject: ["keys": document])
        let set = try await JWKSCache.keys(of: data)
        #expect(set.kids == ["good": ["ES256"]])
        #expect(Set(set.skipped.map(\.kid)) == ["k256", "enc-x", "future", "broken", "encryption", "#5", "#6"])

        let signer = JWTKeyCollection()
        await signer.add(ecdsa: signing, kid: "good")
        let token = try await signer.sign(
            Claims(sub: SubjectClaim(value: "carol"), exp: ExpirationClaim(value: Date().addingTimeInterval(600))), kid: "good")
        let claims = try await set.collection.verify(token, as: Claims.self)
        #expect(claims.sub.value == "carol")
    }

    @Test func aDocumentWithoutKeysIsRefused() async {
        for text in ["", "[]", "{\"keys\":{}}", "{}", "{\"keys\":[1,"] {
            await #expect(throws: (any Error).self, "\(text)") { try await JWKSCache.keys(of: Data(text.utf8)) }
        }
    }
}

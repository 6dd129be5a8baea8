import Foundation
import JWTKit

/// Signs chat-relay tokens (`chat-relay token`), for development and tests: the same claims an
/// identity service would issue (`RelayClaims`), with an HMAC secret or a PEM private key.
public struct TokenMinter: Sendable {
    private let keys: JWTKeyCollection
    /// The algorithm the key signs with.
    public let algorithm: String

    /// With an HMAC secret, for `algorithm` (HS256, HS384 or HS512).
    public init(secret: [UInt8], algorithm: String) async throws(KeyError) {
        // The same rules as the node's (length, algorithm), so a minted token verifies there.
        self.keys = try await VerificationKeys.hmacCollection(secret, algorithm: algorithm)
        self.algorithm = algorithm
    }

    /// With a PEM private key: RSA signs RS256, EC P-256 ES256, Ed25519 EdDSA.
    public init(privateKeyPEM pem: String) async throws(KeyError) {
        let keys = JWTKeyCollection()
        if let key = try? Insecure.RSA.PrivateKey(pem: pem) {
            await keys.add(rsa: key, digestAlgorithm: .sha256)
            algorithm = "RS256"
        } else if let key = try? ES256PrivateKey(pem: pem) {
            await keys.add(ecdsa: key)
            algorithm = "ES256"
        } else if let key = try? EdDSA.PrivateKey(pem: pem) {
            await keys.add(eddsa: key)
            algorithm = "EdDSA"
        } else {
            throw KeyError("not a PEM private key of a type this tool signs with (RSA, EC P-256, Ed25519)")
        }
        self.keys = keys
    }

    /// A token for `subject`, valid for `lifetime` from now.
    public func mint(
        subject: String, name: String? = nil, grants: RoomGrants, lifetime: Duration, issuer: String? = nil, audience: String? = nil,
        kid: String? = nil
    ) async throws -> String {
        let expiry = Date().addingTimeInterval(Double(lifetime.components.seconds) + Double(lifetime.components.attoseconds) / 1e18)
        let claims = RelayClaims(
            sub: SubjectClaim(value: subject), name: name, exp: ExpirationClaim(value: expiry), nbf: nil,
            iss: issuer.map { IssuerClaim(value: $0) }, aud: audience.map { AudienceClaim(value: [$0]) }, rooms: grants)
        return try await keys.sign(claims, kid: kid.map { JWKIdentifier(string: $0) })
    }
}

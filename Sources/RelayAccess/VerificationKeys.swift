import Foundation
import JWTKit

/// The keys a node verifies tokens with, each bound to the one algorithm it is for: an HMAC
/// secret to HS256, HS384 or HS512 as configured; an RSA public key to RS256; an EC P-256 key to
/// ES256; an Ed25519 key to EdDSA. A token is checked only with keys of the algorithm its header
/// names, so an HMAC token "signed" with a public key, or `alg: none`, finds no key at all.
public struct VerificationKeys: Sendable {
    struct Key: Sendable {
        let algorithm: String
        /// jwt-kit's collection holding this one key (its default signer).
        let collection: JWTKeyCollection
    }

    private(set) var keys: [Key] = []

    public init() {}

    /// The HMAC algorithms a secret may be used with.
    public static let hmacAlgorithms = ["HS256", "HS384", "HS512"]

    /// Adds an HMAC secret for `algorithm` (HS256, HS384 or HS512).
    public mutating func addSecret(_ secret: [UInt8], algorithm: String) async throws(KeyError) {
        keys.append(Key(algorithm: algorithm, collection: try await Self.hmacCollection(secret, algorithm: algorithm)))
    }

    /// jwt-kit's collection holding `secret` for `algorithm`, after the checks both the node and
    /// `chat-relay token` apply: a known HMAC algorithm, and a key at least as long as its hash
    /// (RFC 7518 §3.2).
    static func hmacCollection(_ secret: [UInt8], algorithm: String) async throws(KeyError) -> JWTKeyCollection {
        let digest: DigestAlgorithm
        let hashBytes: Int
        switch algorithm {
        case "HS256": (digest, hashBytes) = (.sha256, 32)
        case "HS384": (digest, hashBytes) = (.sha384, 48)
        case "HS512": (digest, hashBytes) = (.sha512, 64)
        default: throw KeyError("an HMAC secret is for HS256, HS384 or HS512, not \(algorithm)")
        }
        guard secret.count >= hashBytes else {
            throw KeyError("the HMAC secret is \(secret.count) bytes; \(algorithm) needs at least \(hashBytes)")
        }
        let collection = JWTKeyCollection()
        await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: digest)
        return collection
    }

    /// The key in file `path`: its bytes, one trailing newline (LF or CR LF) trimmed, as an
    /// editor or `echo` leaves it.
    public static func secret(fromFile path: String) throws(KeyError) -> [UInt8] {
        guard var secret = FileManager.default.contents(atPath: path).map(Array.init) else {
            throw KeyError("cannot read \(path)")
        }
        if secret.last == UInt8(ascii: "\n") { secret.removeLast() }
        if secret.last == UInt8(ascii: "\r") { secret.removeLast() }
        return secret
    }

    /// The text of PEM file `path`.
    public static func pem(fromFile path: String) throws(KeyError) -> String {
        guard let pem = FileManager.default.contents(atPath: path).flatMap({ String(data: $0, encoding: .utf8) }) else {
            throw KeyError("cannot read \(path) as text")
        }
        return pem
    }

    /// Adds the public key of a PEM file (`-----BEGIN PUBLIC KEY-----`, or a certificate), for
    /// the algorithm its type implies: RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA.
    /// - Returns: the algorithm.
    @discardableResult
    public mutating func addPublicKey(pem: String) async throws(KeyError) -> String {
        let collection = JWTKeyCollection()
        let algorithm: String
        if let key = try? Insecure.RSA.PublicKey(pem: pem) {
            await collection.add(rsa: key, digestAlgorithm: .sha256)
            algorithm = "RS256"
        } else if let key = try? Insecure.RSA.PublicKey(certificatePEM: pem) {
            await collection.add(rsa: key, digestAlgorithm: .sha256)
            algorithm = "RS256"
        } else if let key = try? ES256PublicKey(pem: pem) {
            await collection.add(ecdsa: key)
            algorithm = "ES256"
        } else if let key = try? EdDSA.PublicKey(pem: pem) {
            await collection.add(eddsa: key)
            algorithm = "EdDSA"
        } else {
            throw KeyError("not a PEM public key of a type this node takes (RSA, EC P-256, Ed25519)")
        }
        keys.append(Key(algorithm: algorithm, collection: collection))
        return algorithm
    }

    public var isEmpty: Bool { keys.isEmpty }

    var algorithms: Set<String> { Set(keys.map(\.algorithm)) }

    /// The keys to try on a token signed with `algorithm`. Static keys carry no `kid`: a token's
    /// `kid` does not narrow them.
    func collections(for algorithm: String, kid: String?) -> [JWTKeyCollection] {
        keys.filter { $0.algorithm == algorithm }.map(\.collection)
    }
}

/// A key that cannot be used, and why, for a person to act on.
public struct KeyError: Error, Sendable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

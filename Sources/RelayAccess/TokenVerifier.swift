import ChatRelay
import Foundation
import JWTKit
import Logging

/// Verifies a bearer token and reads its identity: the signature with one of the configured keys,
/// by an algorithm the configuration fixed (never the one the token names alone), then `exp`,
/// `nbf`, `iss`, `aud` and the shape of the claims. JOSE parsing and the cryptography are
/// jwt-kit's.
public final class TokenVerifier: Sendable {
    /// What the claims are checked against.
    public struct Checks: Sendable {
        /// `iss` must equal this, if set.
        public var issuer: String?
        /// `aud` must contain this, if set.
        public var audience: String?
        /// Clock skew allowed on `exp` and `nbf`.
        public var leeway: Duration

        public init(issuer: String? = nil, audience: String? = nil, leeway: Duration = .seconds(30)) {
            self.issuer = issuer
            self.audience = audience
            self.leeway = leeway
        }
    }

    let keys: VerificationKeys
    let jwks: JWKSCache?
    let checks: Checks
    private let parser = DefaultJWTParser()
    /// Tokens verified before, until they expire.
    let cache = VerifiedTokenCache()

    /// The longest token read at all: a JWT with a hundred grants is a few KiB.
    public static let maxTokenBytes = 8192

    public init(keys: VerificationKeys, jwks: JWKSCache? = nil, checks: Checks = Checks()) {
        self.keys = keys
        self.jwks = jwks
        self.checks = checks
    }

    /// The algorithms tokens may be signed with: those of the configured keys (and, with a JWKS,
    /// those its keys allow).
    public var acceptedAlgorithms: Set<String> {
        keys.algorithms.union(jwks == nil ? [] : JWKSCache.algorithms)
    }

    /// The identity `token` carries, or why it is refused.
    /// - Parameter now: seconds since the Unix epoch.
    public func verify(_ token: String, now: Double = Date().timeIntervalSince1970) async throws(AuthFailure) -> Identity {
        guard token.utf8.count <= Self.maxTokenBytes else {
            throw AuthFailure(.malformed, "The token is over \(Self.maxTokenBytes) bytes.")
        }
        guard Self.isCompactJWS(token) else {
            throw AuthFailure(.malformed, "The token must be three base64url parts without padding, joined by dots.")
        }
        let leeway = Double(checks.leeway.components.seconds)
        if let identity = cache.identity(of: token, now: now, leeway: leeway) { return identity }
        let bytes = Array(token.utf8)
        let header: JWTHeader
        do {
            header = try parser.parse(bytes, as: RelayClaims.self).header
        } catch {
            throw AuthFailure(.malformed, "The token is not a JWT with chat-relay's claims.")
        }
        guard let algorithm = header.alg, algorithm != "none" else {
            throw AuthFailure(.algorithm, "The token names no signing algorithm.")
        }
        let claims = try await verifySignature(bytes, algorithm: algorithm, kid: header.kid)
        let identity = try identity(claims, now: now, leeway: leeway)
        // Not yet valid (nbf) is refused above; such a token is not cached before it is valid.
        cache.store(token, identity)
        return identity
    }

    /// Whether `token` has the form of a JWS in compact serialization (RFC 7515 §7.1): three
    /// parts of the base64url alphabet, joined by two dots, without padding (RFC 7515 §2). A
    /// parser that forgives padding or other bytes would let many spellings of one token pass.
    static func isCompactJWS(_ token: String) -> Bool {
        var dots = 0
        for byte in token.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"):
                continue
            case UInt8(ascii: "."):
                dots += 1
            default:
                return false
            }
        }
        return dots == 2
    }

    private func verifySignature(_ token: [UInt8], algorithm: String, kid: String?) async throws(AuthFailure) -> RelayClaims {
        var candidates = keys.collections(for: algorithm, kid: kid)
        if let jwks, let collection = await jwks.collection(kid: kid, algorithm: algorithm) {
            candidates.append(collection)
        }
        guard !candidates.isEmpty else {
            if acceptedAlgorithms.contains(algorithm) {
                throw AuthFailure(.unknownKey, "No key of this node verifies tokens with kid \(String((kid ?? "(none)").prefix(64))).")
            }
            throw AuthFailure(.algorithm, "This node does not accept tokens signed with \(String(algorithm.prefix(20))).")
        }
        var failure = AuthFailure(.signature, "The token's signature does not verify.")
        for collection in candidates {
            do {
                return try await collection.verify(token, as: RelayClaims.self)
            } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
                continue
            } catch {
                failure = AuthFailure(.signature, "The token's signature cannot be checked with this node's key for \(algorithm).")
            }
        }
        throw failure
    }

    private func identity(_ claims: RelayClaims, now: Double, leeway: Double) throws(AuthFailure) -> Identity {
        guard let subject = claims.sub?.value, !subject.isEmpty, subject.utf8.count <= Identity.maxSubjectBytes,
            !subject.unicodeScalars.contains(where: MessageDraft.isControl)
        else {
            throw AuthFailure(.malformed, "The token needs a sub claim of 1 to \(Identity.maxSubjectBytes) bytes, no control characters.")
        }
        guard let expiry = claims.exp?.value.timeIntervalSince1970 else {
            throw AuthFailure(.malformed, "The token has no exp claim: this node takes only tokens that expire.", subject: subject)
        }
        guard now < expiry + leeway else {
            throw AuthFailure(.expired, "The token expired.", subject: subject)
        }
        if let notBefore = claims.nbf?.value.timeIntervalSince1970, now + leeway < notBefore {
            throw AuthFailure(.notYetValid, "The token is not valid yet (nbf).", subject: subject)
        }
        if let issuer = checks.issuer, claims.iss?.value != issuer {
            throw AuthFailure(.issuer, "The token's issuer is not the one this node trusts.", subject: subject)
        }
        if let audience = checks.audience, !(claims.aud?.value.contains(audience) ?? false) {
            throw AuthFailure(.audience, "The token is not meant for this service (aud).", subject: subject)
        }
        var name = claims.name
        if let given = name {
            guard given.count <= Identity.maxNameCharacters,
                !given.unicodeScalars.contains(where: MessageDraft.isControl)
            else {
                throw AuthFailure(
                    .malformed, "The token's name claim is over \(Identity.maxNameCharacters) characters or has control characters.",
                    subject: subject)
            }
            if given.isEmpty { name = nil }
        }
        return Identity(subject: subject, name: name, grants: claims.rooms ?? RoomGrants(), expiresAt: expiry)
    }
}

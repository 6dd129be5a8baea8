import AsyncHTTPClient
import Foundation
import JWTKit
import Logging
import NIOCore

/// The keys of a JWKS URL (an identity provider's `/.well-known/jwks.json`), cached. A token whose
/// `kid` is not in the cache makes it fetch the set again, at most once per `minimumRefetch`
/// however many such tokens come; a failed fetch keeps the keys it had, so tokens signed with
/// known keys still verify while the provider is down.
public actor JWKSCache {
    /// The algorithms a JWKS key may verify, by its type: RSA, EC P-256/384/521, OKP (Ed25519).
    static let algorithms: Set<String> = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "EdDSA"]

    private let url: String
    private let client: HTTPClient
    private let minimumRefetch: Duration
    private let logger: Logger
    private var collection = JWTKeyCollection()
    /// The algorithms each cached key verifies (its `alg`, or those its type allows).
    private var kids: [String: Set<String>] = [:]
    private var lastAttempt: ContinuousClock.Instant?
    private var fetching: Task<Void, Never>?
    /// Fetches made, successful or not (for tests and logs).
    public private(set) var fetches = 0

    /// The largest JWKS document read.
    static let maxBytes = 1 << 20

    public init(url: String, client: HTTPClient = .shared, minimumRefetch: Duration = .seconds(5), logger: Logger) {
        self.url = url
        self.client = client
        self.minimumRefetch = minimumRefetch
        self.logger = logger
    }

    /// The collection to verify a token of `kid` and `algorithm` with, fetching the set first if
    /// the kid is unknown (and the last fetch is old enough); nil if no key fits.
    func collection(kid: String?, algorithm: String) async -> JWTKeyCollection? {
        guard Self.algorithms.contains(algorithm) else { return nil }
        if let match = cached(kid: kid, algorithm: algorithm) { return match }
        await refreshIfDue()
        return cached(kid: kid, algorithm: algorithm)
    }

    private func cached(kid: String?, algorithm: String) -> JWTKeyCollection? {
        if let kid {
            return kids[kid]?.contains(algorithm) == true ? collection : nil
        }
        // No kid: only a set of one key says which key is meant.
        guard kids.count == 1, kids.values.first?.contains(algorithm) == true else { return nil }
        return collection
    }

    /// Fetches the set now unless a fetch ran within `minimumRefetch`; waits for one in flight.
    public func refreshIfDue() async {
        if let fetching {
            await fetching.value
            return
        }
        if let lastAttempt, ContinuousClock.now - lastAttempt < minimumRefetch { return }
        lastAttempt = .now
        let task = Task { await self.fetch() }
        fetching = task
        await task.value
        fetching = nil
    }

    private func fetch() async {
        fetches += 1
        do {
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "Accept", value: "application/json")
            let response = try await client.execute(request, timeout: .seconds(5))
            guard response.status == .ok else { throw KeyError("the JWKS URL answered \(response.status.code)") }
            let body = try await response.body.collect(upTo: Self.maxBytes)
            let set = try JSONDecoder().decode(JWKS.self, from: Data(body.readableBytesView))
            let fresh = JWTKeyCollection()
            var freshKids: [String: Set<String>] = [:]
            for key in set.keys {
                guard let kid = key.keyIdentifier?.string else { continue }
                let allowed = Self.allowedAlgorithms(key)
                guard !allowed.isEmpty else { continue }
                do {
                    try await fresh.add(jwk: key)
                    freshKids[kid] = allowed
                } catch {
                    logger.warning("JWKS key skipped", metadata: ["kid": "\(kid)", "error": "\(error)"])
                }
            }
            collection = fresh
            kids = freshKids
            logger.info("JWKS fetched", metadata: ["keys": "\(freshKids.count)"])
        } catch {
            logger.warning(
                "JWKS fetch failed; keeping the keys cached", metadata: ["error": "\(error)", "cached": "\(kids.count)"])
        }
    }

    /// What a JWK may verify: its `alg` if it names one (and the type fits it), else what its
    /// type allows.
    static func allowedAlgorithms(_ key: JWK) -> Set<String> {
        let byType: Set<String>
        switch key.keyType {
        case .rsa: byType = ["RS256", "RS384", "RS512"]
        case .ecdsa:
            switch key.curve?.rawValue {
            case "P-256": byType = ["ES256"]
            case "P-384": byType = ["ES384"]
            case "P-521": byType = ["ES512"]
            default: byType = []
            }
        case .octetKeyPair: byType = key.curve?.rawValue == "Ed25519" ? ["EdDSA"] : []
        default: byType = []
        }
        guard let named = key.algorithm?.rawValue else { return byType }
        return byType.contains(named) ? [named] : []
    }
}

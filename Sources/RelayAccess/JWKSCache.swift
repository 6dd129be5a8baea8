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
    /// The kids of keys skipped and logged already: each is logged once, not at every fetch.
    private var reported: Set<String> = []

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
            let set = try await Self.keys(of: Data(body.readableBytesView))
            for (kid, reason) in set.skipped where reported.insert(kid).inserted {
                logger.warning("JWKS key skipped", metadata: ["kid": "\(kid)", "reason": "\(reason)"])
            }
            // A set that changes every fetch must not grow this without end.
            if reported.count > 1024 { reported = [] }
            collection = set.collection
            kids = set.kids
            logger.info("JWKS fetched", metadata: ["keys": "\(set.kids.count)", "skipped": "\(set.skipped.count)"])
        } catch {
            logger.warning(
                "JWKS fetch failed; keeping the keys cached", metadata: ["error": "\(error)", "cached": "\(kids.count)"])
        }
    }

    /// The keys of a JWKS document that can verify tokens, read key by key: identity providers
    /// publish keys of other kinds beside their signing keys (encryption keys, curves jwt-kit does
    /// not take, types it does not know), and one of those must not cost the node the others.
    /// - Returns: the collection, the algorithms each kid verifies, and each key skipped (by its
    ///   kid, or its place in the set) with why.
    /// - Throws: when the document is not a JSON object with an array of `keys`.
    static func keys(of document: Data) async throws -> (
        collection: JWTKeyCollection, kids: [String: Set<String>], skipped: [(kid: String, reason: String)]
    ) {
        let set = try JSONDecoder().decode(LenientSet.self, from: document)
        let collection = JWTKeyCollection()
        var kids: [String: Set<String>] = [:]
        var skipped: [(kid: String, reason: String)] = []
        for (index, entry) in set.keys.enumerated() {
            guard let key = entry.key else {
                skipped.append((entry.kid ?? "#\(index)", "not a key this node can read"))
                continue
            }
            guard let kid = key.keyIdentifier?.string else {
                skipped.append(("#\(index)", "no kid"))
                continue
            }
            if let use = entry.use, use != "sig" {
                skipped.append((kid, "a key for \(use.prefix(16)), not for signatures"))
                continue
            }
            let allowed = allowedAlgorithms(key)
            guard !allowed.isEmpty else {
                skipped.append((kid, "not a signing key of a type and curve this node verifies"))
                continue
            }
            do {
                try await collection.add(jwk: key)
                kids[kid] = allowed
            } catch {
                skipped.append((kid, "\(error)"))
            }
        }
        return (collection, kids, skipped)
    }

    /// A JWKS whose keys are decoded one by one: an entry that is not a JWK jwt-kit reads is
    /// kept as nil (with its kid and use, if it has them), not a failure of the whole set.
    private struct LenientSet: Decodable {
        struct Entry: Decodable {
            let key: JWK?
            let kid: String?
            let use: String?

            init(from decoder: any Decoder) {
                key = try? JWK(from: decoder)
                let fields = try? decoder.container(keyedBy: Field.self)
                kid = (try? fields?.decodeIfPresent(String.self, forKey: .kid)).flatMap { $0.map { String($0.prefix(64)) } }
                use = (try? fields?.decodeIfPresent(String.self, forKey: .use)).flatMap { $0 }
            }

            enum Field: String, CodingKey {
                case kid, use
            }
        }

        let keys: [Entry]
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

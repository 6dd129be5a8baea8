import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import RelayAccess

/// The access-control flags of `serve`, each with its environment fallback, turned into the
/// node's `AccessPolicy` at start-up (keys read and checked before the node listens).
struct AccessOptions: ParsableArguments {
    @Option(
        name: .customLong("auth"),
        help:
            "none: anyone reads and posts, as the name they give. jwt: a signed token says who you are and which rooms you may read and post in (docs/API.md). (env: AUTH, default: none)"
    )
    var auth: String?

    @Option(
        name: .customLong("jwt-secret-file"),
        help: "A file whose bytes (a trailing newline trimmed) are the HMAC key tokens are signed with. (env: JWT_SECRET_FILE)")
    var jwtSecretFile: String?

    @Option(
        name: .customLong("jwt-hmac-algorithm"),
        help: "The one algorithm the HMAC secret verifies: HS256, HS384 or HS512. (env: JWT_HMAC_ALGORITHM, default: HS256)")
    var jwtHMACAlgorithm: String?

    @Option(
        name: .customLong("jwt-public-key-file"),
        help:
            "A PEM public key (or certificate) tokens are signed for: RSA verifies RS256, EC P-256 ES256, Ed25519 EdDSA. Repeat it for several. (env: JWT_PUBLIC_KEY_FILES, comma-separated)"
    )
    var jwtPublicKeyFiles: [String] = []

    @Option(
        name: .customLong("jwks-url"),
        help:
            "An identity provider's JWKS URL: its keys are fetched and cached, and fetched again (at most every 5 s) for a token whose kid is unknown. (env: JWKS_URL)"
    )
    var jwksURL: String?

    @Option(name: .customLong("jwt-issuer"), help: "Tokens must have this iss. (env: JWT_ISSUER, default: not checked)")
    var jwtIssuer: String?

    @Option(name: .customLong("jwt-audience"), help: "Tokens' aud must include this. (env: JWT_AUDIENCE, default: not checked)")
    var jwtAudience: String?

    @Option(
        name: .customLong("jwt-leeway"), help: "Clock skew allowed on exp and nbf, in seconds (or 30s, 1m). (env: JWT_LEEWAY, default: 30)")
    var jwtLeeway: String?

    @Option(
        name: .customLong("public-rooms"),
        help:
            "Rooms anyone may read (streams and history) without a token, comma-separated names or prefixes ending in * (e.g. lobby,news-*). Posting always needs a token. (env: PUBLIC_ROOMS, default: none)"
    )
    var publicRooms: String?

    @Option(
        name: .customLong("ticket-ttl"),
        help: "How long a stream ticket (POST /auth/tickets) may wait to be used, in seconds (or 30s, 1m). (env: TICKET_TTL, default: 30)")
    var ticketTTL: String?

    @Option(
        name: .customLong("cookie-name"),
        help: "The session cookie's name (POST /auth/session). (env: COOKIE_NAME, default: chat_relay_token)")
    var cookieName: String?

    @Option(
        name: .customLong("cookie-same-site"),
        help:
            "The session cookie's SameSite: Strict, Lax, or None (only over TLS: for pages on another site). (env: COOKIE_SAME_SITE, default: Strict)"
    )
    var cookieSameSite: String?

    @Option(
        name: .customLong("page-token-url"),
        help:
            "Where the chat page (GET /) fetches a token for its user, with the browser's cookies (credentials: include), at start and before each expiry: your app's endpoint answering the token as text or {\"token\": \"…\"}. (env: PAGE_TOKEN_URL, default: none: the page asks for a token)"
    )
    var pageTokenURL: String?

    /// The policy these flags (else their environment variables) describe, keys loaded.
    func policy(environment: [String: String], logger: Logger) async throws -> AccessPolicy {
        let fallback = FlagFallback(environment: environment)
        func value(_ flag: String?, _ name: String) -> String? { fallback.value(flag, name) }
        func list(_ flags: [String], _ name: String) -> [String] { fallback.list(flags, name) }
        let mode = (value(auth, "AUTH") ?? "none").lowercased()
        let secretFile = value(jwtSecretFile, "JWT_SECRET_FILE")
        let publicKeyFiles = list(jwtPublicKeyFiles, "JWT_PUBLIC_KEY_FILES")
        let jwks = value(jwksURL, "JWKS_URL")
        var policy = AccessPolicy()

        switch mode {
        case "none":
            if secretFile != nil || !publicKeyFiles.isEmpty || jwks != nil || value(publicRooms, "PUBLIC_ROOMS") != nil
                || value(pageTokenURL, "PAGE_TOKEN_URL") != nil
            {
                throw ValidationError(
                    "Token keys, --public-rooms and --page-token-url take effect with --auth jwt only; add --auth jwt (AUTH=jwt).")
            }
            return policy
        case "jwt":
            break
        default:
            throw ValidationError("--auth must be none or jwt; got \(mode.debugDescription).")
        }

        var keys = VerificationKeys()
        if let secretFile {
            let algorithm = (value(jwtHMACAlgorithm, "JWT_HMAC_ALGORITHM") ?? "HS256").uppercased()
            do {
                try await keys.addSecret(try VerificationKeys.secret(fromFile: secretFile), algorithm: algorithm)
            } catch {
                throw ValidationError("--jwt-secret-file \(secretFile): \(error).")
            }
        }
        for file in publicKeyFiles {
            do {
                try await keys.addPublicKey(pem: try VerificationKeys.pem(fromFile: file))
            } catch {
                throw ValidationError("--jwt-public-key-file \(file): \(error).")
            }
        }
        var cache: JWKSCache?
        if let jwks {
            guard let url = URL(string: jwks), url.scheme == "https" || url.scheme == "http", url.host != nil else {
                throw ValidationError("--jwks-url must be an http(s) URL; got \(jwks.debugDescription).")
            }
            cache = JWKSCache(url: jwks, logger: logger)
        }
        guard !keys.isEmpty || cache != nil else {
            throw ValidationError("--auth jwt needs keys: --jwt-secret-file, --jwt-public-key-file or --jwks-url.")
        }
        var checks = TokenVerifier.Checks(issuer: value(jwtIssuer, "JWT_ISSUER"), audience: value(jwtAudience, "JWT_AUDIENCE"))
        if let text = value(jwtLeeway, "JWT_LEEWAY") { checks.leeway = try Settings.duration(text, flag: "--jwt-leeway") }
        policy.verifier = TokenVerifier(keys: keys, jwks: cache, checks: checks)

        if let text = value(publicRooms, "PUBLIC_ROOMS") {
            policy.publicRooms = try text.split(separator: ",").map { item in
                let trimmed = item.trimmingCharacters(in: .whitespaces)
                guard let pattern = RoomPattern(trimmed) else {
                    throw ValidationError("--public-rooms: \(trimmed.debugDescription) is not a room name or a prefix ending in *.")
                }
                return pattern
            }
        }
        if let text = value(ticketTTL, "TICKET_TTL") {
            policy.ticketTTL = try Settings.duration(text, flag: "--ticket-ttl")
            guard policy.ticketTTL >= .seconds(1), policy.ticketTTL <= .seconds(600) else {
                throw ValidationError("--ticket-ttl must be from 1 second to 10 minutes.")
            }
        }
        if let url = value(pageTokenURL, "PAGE_TOKEN_URL") {
            let parsed = URL(string: url)
            guard url.hasPrefix("/") || parsed?.scheme == "https" || parsed?.scheme == "http", parsed != nil else {
                throw ValidationError(
                    "--page-token-url must be a path on this site (/app/token) or an http(s) URL; got \(url.debugDescription).")
            }
            policy.pageTokenURL = url
        }
        if let name = value(cookieName, "COOKIE_NAME") {
            guard !name.isEmpty, name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && !"()<>@,;:\\\"/[]?={}".utf8.contains($0) }) else {
                throw ValidationError("--cookie-name must be a cookie name (letters, digits, - and _); got \(name.debugDescription).")
            }
            policy.cookie.name = name
        }
        if let sameSite = value(cookieSameSite, "COOKIE_SAME_SITE") {
            guard let canonical = ["Strict", "Lax", "None"].first(where: { $0.lowercased() == sameSite.lowercased() }) else {
                throw ValidationError("--cookie-same-site must be Strict, Lax or None; got \(sameSite.debugDescription).")
            }
            policy.cookie.sameSite = canonical
        }
        return policy
    }
}

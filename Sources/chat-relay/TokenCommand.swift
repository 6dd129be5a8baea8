import ArgumentParser
import Foundation
import RelayAccess

/// `chat-relay token`: mints a token for development and tests, signed with the secret (or
/// private key) a node verifies with.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Print a signed token (JWT) for a node running with --auth jwt, for development and tests.",
        discussion: """
            Example: chat-relay token --jwt-secret-file secret --sub alice --name Alice --subscribe 'team-*' --publish 'team-*' --ttl 1h
            In production your identity service issues tokens with the same claims (docs/API.md, "Access control").
            """
    )

    @Option(name: .customLong("sub"), help: "The identity: each message's user.")
    var subject: String

    @Option(name: .customLong("name"), help: "A display name (the name claim).")
    var name: String?

    @Option(name: .customLong("subscribe"), help: "A room (or prefix*) the token may read; repeat it.")
    var subscribe: [String] = []

    @Option(name: .customLong("publish"), help: "A room (or prefix*) the token may post in; repeat it.")
    var publish: [String] = []

    @Option(name: .customLong("ttl"), help: "How long the token lives: seconds, or 90s, 30m, 1h, 7d. (default: 1h)")
    var ttl: String = "1h"

    @Option(
        name: .customLong("jwt-secret-file"),
        help: "Sign with this HMAC secret (its bytes, a trailing newline trimmed), as the node's --jwt-secret-file. (env: JWT_SECRET_FILE)")
    var secretFile: String?

    @Option(name: .customLong("jwt-hmac-algorithm"), help: "HS256, HS384 or HS512. (env: JWT_HMAC_ALGORITHM, default: HS256)")
    var hmacAlgorithm: String?

    @Option(
        name: .customLong("jwt-private-key-file"),
        help: "Sign with this PEM private key instead: RSA signs RS256, EC P-256 ES256, Ed25519 EdDSA. (env: JWT_PRIVATE_KEY_FILE)")
    var privateKeyFile: String?

    @Option(name: .customLong("kid"), help: "The key id to put in the token's header (for a node on a JWKS).")
    var kid: String?

    @Option(name: .customLong("issuer"), help: "The iss claim.")
    var issuer: String?

    @Option(name: .customLong("audience"), help: "The aud claim.")
    var audience: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        func patterns(_ texts: [String], _ flag: String) throws -> [RoomPattern] {
            try texts.map { text in
                guard let pattern = RoomPattern(text) else {
                    throw ValidationError("\(flag): \(text.debugDescription) is not a room name or a prefix ending in *.")
                }
                return pattern
            }
        }
        let grants = RoomGrants(subscribe: try patterns(subscribe, "--subscribe"), publish: try patterns(publish, "--publish"))
        let lifetime = try Settings.duration(ttl, flag: "--ttl")
        guard lifetime > .zero else { throw ValidationError("--ttl must be more than 0.") }
        let minter: TokenMinter
        do {
            let fallback = FlagFallback(environment: environment)
            if let path = fallback.value(privateKeyFile, "JWT_PRIVATE_KEY_FILE") {
                minter = try await TokenMinter(privateKeyPEM: try VerificationKeys.pem(fromFile: path))
            } else if let path = fallback.value(secretFile, "JWT_SECRET_FILE") {
                let algorithm = (fallback.value(hmacAlgorithm, "JWT_HMAC_ALGORITHM") ?? "HS256").uppercased()
                minter = try await TokenMinter(secret: try VerificationKeys.secret(fromFile: path), algorithm: algorithm)
            } else {
                throw ValidationError("Give the key to sign with: --jwt-secret-file or --jwt-private-key-file.")
            }
        } catch let error as KeyError {
            throw ValidationError("\(error).")
        }
        let token = try await minter.mint(
            subject: subject, name: name, grants: grants, lifetime: lifetime, issuer: issuer, audience: audience, kid: kid)
        print(token)
    }
}

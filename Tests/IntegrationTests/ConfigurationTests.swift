import Foundation
import TestSupport
import Testing

/// Every setting is its flag, else its environment variable (set and not empty), and a variable
/// that does not parse stops the node with a message naming it; `serve`, its access flags and
/// `token` read them alike.
@Suite struct ConfigurationTests {
    @Test func environmentVariablesStandInForFlagsAndAFlagWins() async throws {
        // ALLOW_ORIGIN as a comma-separated list (spaces and empty parts ignored), RATE_LIMIT and
        // RATE_BURST as numbers, AUTH and JWT_SECRET_FILE for the access policy.
        let secretFile = try AccessControlTests.secretFile()
        let node = try await RelayProcess(
            arguments: ["--rate-burst", "2"],
            environment: [
                "ALLOW_ORIGIN": "http://a.example, ,http://b.example", "RATE_LIMIT": "0.2", "RATE_BURST": "50", "AUTH": "jwt",
                "JWT_SECRET_FILE": secretFile,
            ])
        defer { node.kill() }
        for origin in ["http://a.example", "http://b.example"] {
            let reply = try await HTTP.get(node.baseURL + "/health/live", headers: [("Origin", origin)])
            #expect(reply.header("Access-Control-Allow-Origin") == origin)
        }
        let other = try await HTTP.get(node.baseURL + "/health/live", headers: [("Origin", "http://c.example")])
        #expect(other.header("Access-Control-Allow-Origin") == nil)
        // AUTH=jwt: history without a token is refused; POSTs with one get the flag's burst of
        // 2, not the variable's 50, then the variable's limit (a token every 5 s).
        let anonymous = try await HTTP.get(node.baseURL + "/rooms/cfg/messages")
        #expect(anonymous.status == 401)
        let token = try await AccessControlTests.token("cfg", subscribe: ["*"], publish: ["*"])
        var statuses: [Int] = []
        for index in 0..<3 {
            statuses.append(
                try await HTTP.postMessage(
                    node.baseURL + "/rooms/cfg/messages", user: "u", text: "m\(index)", headers: AccessControlTests.bearer(token)
                ).status)
        }
        #expect(statuses == [201, 201, 429], "a burst of 2 (the flag), then the limit")
    }

    @Test(arguments: [("RATE_LIMIT", "fast"), ("MAX_CONNECTIONS", "many"), ("DRAIN_TIMEOUT", "soon")])
    func aVariableThatDoesNotParseStopsTheNodeSayingWhich(name: String, value: String) async throws {
        do {
            let node = try await RelayProcess(environment: [name: value])
            node.kill()
            Issue.record("the node started with \(name)=\(value)")
        } catch let error as RelayProcessError {
            #expect("\(error)".contains("The environment variable \(name)=\"\(value)\" is not a valid value."), "\(error)")
        }
    }

    /// Numbers past what the node can hold are refused at start-up with the flag's name, never a
    /// trap: each of these once overflowed a conversion or a sum (exit 132 or 133 on a trap).
    @Test(arguments: [
        ["--heartbeat", "1e300"], ["--drain-timeout", "1e300"], ["--request-timeout", "1e300"], ["--history-ttl", "9e18d"],
        ["--max-connections", "\(Int.max)"], ["--retry-ms", "\(Int.max)"], ["--history", "\(Int.max)"],
        ["--max-body-bytes", "\(Int.max)"], ["--heartbeat", "nan"], ["--idle-timeout", "inf"],
    ])
    func anOutOfRangeFlagStopsTheNodeSayingWhich(arguments: [String]) async throws {
        do {
            let node = try await RelayProcess(arguments: arguments)
            node.kill()
            Issue.record("the node started with \(arguments)")
        } catch let error as RelayProcessError {
            guard case .exited(_, let log) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(!log.contains("Fatal error"), "a usage error, not a trap: \(log)")
            #expect(log.contains("Error: \(arguments[0])"), "\(log)")
        }
    }

    /// `chat-relay token` takes its key from JWT_SECRET_FILE when no flag names one.
    @Test func theTokenCommandReadsItsKeyFromTheEnvironment() async throws {
        let secretFile = try AccessControlTests.secretFile()
        let run = try await ChildProcess.run(
            "/usr/bin/env", ["JWT_SECRET_FILE=" + secretFile, RelayProcess.binaryPath, "token", "--sub", "envy", "--publish", "*"])
        #expect(run.status == 0, "\(run.errors)")
        let parts = run.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".")
        #expect(parts.count == 3, "a JWT: \(run.output)")
        let missing = try await ChildProcess.run(
            "/usr/bin/env", ["-u", "JWT_SECRET_FILE", RelayProcess.binaryPath, "token", "--sub", "envy"])
        #expect(missing.status != 0, "no key, no token")
    }
}

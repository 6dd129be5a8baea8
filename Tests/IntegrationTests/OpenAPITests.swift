import Foundation
import TestSupport
import Testing

/// docs/openapi.yaml against a live node, with schemathesis (PyPI, installed by `make test`): the
/// document and the node cannot drift apart, and the node survives what schemathesis generates
/// from it (valid and invalid paths, parameters, bodies, methods): no 5xx, no crash, every
/// answer of a documented status, content type, headers and shape — errors included.
@Suite struct OpenAPITests {
    static let schemathesis = packageRoot + "/.tools/schemathesis/bin/st"

    /// Once on an open node (`--auth none`: the `/auth/...` endpoints, which answer 404 there, are
    /// left out), once with `--auth jwt` and a token granting every room on every request.
    @Test(.timeLimit(.minutes(5)), arguments: ["none", "jwt"])
    func theNodeAnswersWhatTheDocumentSaysWhateverSchemathesisSends(auth: String) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.schemathesis), "schemathesis missing: run make test")
        var nodeArguments = ["--rate-limit", "0"]
        var schemathesisArguments = ["--exclude-path-regex", "^/auth/"]
        if auth == "jwt" {
            nodeArguments += ["--auth", "jwt", "--jwt-secret-file", try AccessControlTests.secretFile()]
            let token = try await AccessControlTests.token("schemathesis", subscribe: ["*"], publish: ["*"])
            // The body's user is not read with a token, so the document's rules for it (which
            // describe --auth none) are not enforced: negative_data_rejection is left out here.
            schemathesisArguments = ["--header", "Authorization: Bearer \(token)"]
        }
        let node = try await RelayProcess(arguments: nodeArguments)
        defer { node.kill() }
        let log = NSTemporaryDirectory() + "chat-relay-schemathesis-\(node.port).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = packageRoot + "/.tools/schemathesis"
        environment["SCHEMATHESIS_HOOKS"] = nil
        // Every check but positive_data_acceptance: the document says what a field may hold, not
        // every rule the node applies (a text's limit is in bytes of UTF-8, after trimming).
        let run = try ChildProcess(
            "/usr/bin/env",
            [
                "python3", Self.schemathesis, "run", packageRoot + "/docs/openapi.yaml", "--url", node.baseURL,
                "--checks", "all", "--exclude-checks",
                auth == "jwt" ? "positive_data_acceptance,negative_data_rejection" : "positive_data_acceptance", "--max-examples", "50",
                "--no-color",
            ] + schemathesisArguments, logPath: log, environment: environment)
        let status = await run.waitForExit(timeout: .seconds(240))
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(status == 0, "schemathesis found problems:\n\(output.suffix(6000))")
        #expect(output.contains("No issues found"), "\(output.suffix(2000))")
        #expect(node.isRunning, "the node survived; its log:\n\(node.log().suffix(3000))")
        #expect(!node.log().contains("request failed"), "no request failed inside the node")
    }
}

import Foundation
import TestSupport
import Testing

/// The protocol fuzzer against live nodes, on the embedded broker and on Redis: random and
/// structured bytes at every stage of a connection (`FuzzCase.Stage`), while the node must stay
/// alive and ready and its bystander streams keep getting every message. `FUZZ_SECONDS` (default
/// 15) bounds each run, `FUZZ_SEED` repeats one; `make fuzz` runs longer.
///
/// Inputs that once broke a node are kept in `Corpus/protocol.json` and sent first, every run.
@Suite(.serialized) struct ProtocolFuzzTests {
    static let corpusPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Corpus/protocol.json").path

    /// A node for the fuzzer, with a Redis of its own on "redis".
    static func node(on broker: String) async throws -> (RelayProcess, RedisServer?) {
        try await NodeAbuseTests.node(on: broker, ["--history", "50", "--rate-burst", "500"])
    }

    /// Records the report's failures, with the cases in flight as corpus entries to keep.
    static func expectClean(_ report: ProtocolFuzzer.Report, broker: String) {
        guard !report.failures.isEmpty else { return }
        let path = NSTemporaryDirectory() + "chat-relay-fuzz-\(broker)-\(report.seed).json"
        let corpus = FuzzCase.corpusJSON(report.suspects)
        try? corpus.write(toFile: path, atomically: true, encoding: .utf8)
        Issue.record(
            "\(report)\n\(report.failures.joined(separator: "\n"))\ncases in flight (corpus entries, also in \(path)):\n\(corpus)")
    }

    @Test(.timeLimit(.minutes(3)), arguments: ["embedded", "redis"])
    func theCorpusLeavesTheNodeWhole(broker: String) async throws {
        let cases = try FuzzCase.corpus(atPath: Self.corpusPath)
        #expect(cases.count >= 10)
        let (node, redis) = try await Self.node(on: broker)
        defer {
            node.kill()
            redis?.killNow()
        }
        let fuzzer = ProtocolFuzzer(node: node, seed: 0)
        try await fuzzer.prepare()
        let report = try await fuzzer.replay(cases)
        #expect(report.cases == cases.count)
        Self.expectClean(report, broker: broker)
    }

    @Test(.timeLimit(.minutes(60)), arguments: ["embedded", "redis"])
    func randomInputsLeaveTheNodeWhole(broker: String) async throws {
        let environment = ProcessInfo.processInfo.environment
        let seconds = environment["FUZZ_SECONDS"].flatMap(Double.init) ?? 15
        let seed = environment["FUZZ_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        let (node, redis) = try await Self.node(on: broker)
        defer {
            node.kill()
            redis?.killNow()
        }
        let fuzzer = ProtocolFuzzer(node: node, seed: seed)
        try await fuzzer.prepare()
        let report = try await fuzzer.run(for: .milliseconds(Int64(seconds * 1000)))
        print("protocol fuzzer (\(broker)): \(report)")
        // Every stage was tried.
        #expect(FuzzCase.Stage.allCases.allSatisfy { (report.byStage[$0] ?? 0) > 0 }, "\(report)")
        Self.expectClean(report, broker: broker)
    }
}

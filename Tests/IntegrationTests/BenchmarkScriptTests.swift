import Foundation
import TestSupport
import Testing

/// `benchmarks/vs-nchan.sh --quick`: the side-by-side script runs end to end (three Nchan nodes and
/// three relay nodes, each trio on its own Redis; and the relay on a Redis Cluster of three
/// masters) and writes its report. The numbers of a quick run on a debug build mean nothing;
/// that every message arrived does.
@Suite struct BenchmarkScriptTests {
    @Test(.timeLimit(.minutes(5))) func quickRunWritesTheReportWithBothSystems() async throws {
        let output = NSTemporaryDirectory() + "vs-nchan-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: output) }
        var environment = ProcessInfo.processInfo.environment
        environment["CHAT_RELAY_BIN"] = RelayProcess.binaryPath
        let log = output + ".log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let script = try ChildProcess(
            "/bin/bash",
            [
                packageRoot + "/benchmarks/vs-nchan.sh", "--quick", "--scenarios", "light,medium,light-one,saturation-many-rooms",
                "--output", output,
                "--work", output + "/work",
            ],
            logPath: log,
            environment: environment
        )
        let status = await script.waitForExit(timeout: .seconds(240))
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(status == 0, "vs-nchan.sh failed:\n\(text.suffix(3000))")

        let report = try String(contentsOfFile: output + "/BENCHMARKS.md", encoding: .utf8)
        for row in [
            "| light: 30 subscribers, 20 msg/s | Nchan |", "| light: 30 subscribers, 20 msg/s | chat-relay |",
            "| medium: 300 subscribers, 25 msg/s | Nchan |", "| medium: 300 subscribers, 25 msg/s | chat-relay |",
            "| light-one: 30 subscribers, 20 msg/s, one publisher connection to one node | chat-relay |",
        ] {
            #expect(report.contains(row), "missing row \(row)")
        }
        // chat-relay on one Redis and on a Redis Cluster of three masters, each master's CPU shown.
        #expect(report.contains("## One Redis or a Redis Cluster"))
        let clusterRows = report.split(separator: "\n").filter { $0.hasPrefix("| cluster, 3 masters |") }
        #expect(clusterRows.count == 2 && clusterRows.allSatisfy { $0.split(separator: "/").count == 3 }, "\(clusterRows)")
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output + "/benchmarks/results.json")))
            as? [String: Any]
        let results = try #require(json?["results"] as? [String: [String: [String: Any]]])
        for scenario in ["light", "medium", "light-one"] {
            for system in ["Nchan", "chat-relay"] {
                let run = try #require(results[scenario]?[system], "\(scenario)/\(system)")
                let bench = try #require(run["report"] as? [String: Any])
                #expect(bench["lost"] as? Int == 0, "\(scenario)/\(system) lost messages")
                #expect((bench["delivered"] as? Int ?? 0) > 0)
                #expect(bench["delivered"] as? Int == bench["deliveriesExpected"] as? Int, "\(scenario)/\(system)")
                #expect((run["server_cpu_seconds"] as? Double ?? -1) >= 0)
            }
        }
    }
}

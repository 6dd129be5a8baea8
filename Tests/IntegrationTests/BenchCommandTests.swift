import Foundation
import TestSupport
import Testing

/// `chat-relay bench` against real nodes: what it reports, and that it fails a run that lost messages.
@Suite(.serialized) struct BenchCommandTests {
    /// Runs `chat-relay bench <arguments> --json --quiet`; returns its exit status and report.
    func bench(_ arguments: [String]) async throws -> (status: Int32, report: [String: Any]) {
        let output = NSTemporaryDirectory() + "bench-\(UInt32.random(in: 0...UInt32.max)).json"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let process = try ChildProcess(RelayProcess.binaryPath, ["bench", "--json", "--quiet"] + arguments, logPath: output)
        guard let status = await process.waitForExit(timeout: .seconds(60)) else {
            await process.kill()
            Issue.record("bench did not finish within 60 s")
            return (-1, [:])
        }
        let text = try String(contentsOfFile: output, encoding: .utf8)
        let line = try #require(text.split(separator: "\n").last { $0.hasPrefix("{") }, "no JSON report in: \(text)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        return (status, report)
    }

    @Test func reportsEveryDeliveryAndLatencyOfACleanRun() async throws {
        let a = try await RelayProcess(arguments: ["--rate-limit", "0"])
        let b = try await RelayProcess(arguments: ["--rate-limit", "0"])
        defer {
            a.kill()
            b.kill()
        }
        // Embedded nodes do not share messages: one run per node, both clean.
        for node in [a, b] {
            let (status, report) = try await bench(["--target", node.baseURL, "--subscribers", "40", "--rate", "200", "--messages", "100"])
            #expect(status == 0)
            #expect(report["connected"] as? Int == 40)
            #expect(report["messagesAccepted"] as? Int == 100)
            #expect(report["deliveriesExpected"] as? Int == 4000)
            #expect(report["delivered"] as? Int == 4000)
            #expect(report["lost"] as? Int == 0)
            #expect(report["duplicated"] as? Int == 0)
            #expect(report["outOfOrder"] as? Int == 0)
            let latency = try #require(report["latencyFromSchedule"] as? [String: Any])
            let p50 = try #require(latency["p50"] as? Double)
            let p99 = try #require(latency["p99"] as? Double)
            #expect(p50 > 0 && p50 <= p99)
            #expect(latency["count"] as? Int == 4000)
            // How close the rate comes to the asked one depends on the machine's load: only that
            // both are reported is checked here.
            #expect(report["rateAsked"] as? Double == 200)
            #expect((report["rateAchieved"] as? Double ?? 0) > 0)
        }
    }

    @Test func manyRoomsOverTwoNodesOnRedis() async throws {
        let cluster = try await ClusterTests.Cluster.start(nodes: 2)
        defer { cluster.kill() }
        for placement in ["together", "spread"] {
            let (status, report) = try await bench([
                "--target", cluster.nodes[0].baseURL, "--target", cluster.nodes[1].baseURL, "--rooms", "30", "--placement", placement,
                "--subscribers", "90", "--rate", "200", "--messages", "120",
            ])
            #expect(status == 0)
            #expect(report["connected"] as? Int == 90)
            // Each message goes to one room of 3 subscribers.
            #expect(report["deliveriesExpected"] as? Int == 360)
            #expect(report["delivered"] as? Int == 360)
            #expect(report["lost"] as? Int == 0)
            #expect(report["duplicated"] as? Int == 0)
        }
    }

    @Test func exitsNonZeroWhenMessagesAreLost() async throws {
        // Streams on one embedded node, POSTs to another: every accepted message is lost.
        let listening = try await RelayProcess(arguments: ["--rate-limit", "0"])
        let elsewhere = try await RelayProcess(arguments: ["--rate-limit", "0"])
        defer {
            listening.kill()
            elsewhere.kill()
        }
        let (status, report) = try await bench([
            "--target", listening.baseURL, "--publish-target", elsewhere.baseURL,
            "--subscribers", "5", "--rate", "100", "--messages", "20", "--drain-timeout", "0.5",
        ])
        #expect(status == 1)
        #expect(report["messagesAccepted"] as? Int == 20)
        #expect(report["lost"] as? Int == 100)
        #expect(report["delivered"] as? Int == 0)
    }

    @Test func exitsWithTwoWhenNothingCanConnect() async throws {
        let port = freeLoopbackPort()
        let process = try ChildProcess(
            RelayProcess.binaryPath, ["bench", "--quiet", "--target", "http://127.0.0.1:\(port)", "--subscribers", "3"])
        #expect(await process.waitForExit(timeout: .seconds(30)) == 2)
    }
}

import Foundation
import TestSupport
import Testing

/// What operators run beside the relay: the Kubernetes manifests (checked against the
/// Kubernetes schemas and built as kustomize would), the Prometheus rules (promtool, and a real
/// Prometheus scraping three nodes on Redis while Redis stops and a node drains) and the Grafana
/// dashboard (every query runs, and names metrics the nodes really export).
@Suite(.serialized) struct OperationsTests {
    static let kubernetesVersion = "1.31.0"
    static let kubernetesValidate = packageRoot + "/.tools/kubernetes-validate/bin/kubernetes-validate"
    static let promtool = "/usr/bin/promtool"
    static let prometheus = "/usr/bin/prometheus"

    /// Python with kubernetes-validate's packages (PyYAML among them) on its path.
    static func python(_ arguments: [String], timeout: Duration = .seconds(120)) async throws -> (
        status: Int32, output: String, errors: String
    ) {
        try await ChildProcess.run(
            "/usr/bin/env", ["PYTHONPATH=" + packageRoot + "/.tools/kubernetes-validate", "python3"] + arguments, timeout: timeout)
    }

    /// `deploy/kubernetes` built (scripts/kustomize-build.py), every object valid for Kubernetes
    /// 1.31 (strict: no field the schema does not know), each file on its own too.
    @Test(.timeLimit(.minutes(3))) func theKubernetesManifestsBuildAndAreValid() async throws {
        try #require(FileManager.default.fileExists(atPath: Self.kubernetesValidate), "kubernetes-validate missing: run make test")
        let directory = packageRoot + "/deploy/kubernetes"
        let built = try await Self.python([
            packageRoot + "/scripts/kustomize-build.py", directory, "--prometheus-job",
            packageRoot + "/deploy/prometheus/scrape-kubernetes.yml",
        ])
        #expect(built.status == 0, "\(built.errors)")
        let output = NSTemporaryDirectory() + "chat-relay-kustomize-\(UUID().uuidString).yaml"
        try built.output.write(toFile: output, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: output) }
        // What the build did: the namespace and the image set, the selectors left alone.
        #expect(built.output.contains("namespace: chat-relay"))
        #expect(built.output.contains("image: registry.example.com/chat-relay:latest"))
        #expect(built.output.components(separatedBy: "\nkind: ").count - 1 == 10, "10 objects:\n\(built.output.prefix(400))")

        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter {
            $0.hasSuffix(".yaml") && $0 != "kustomization.yaml"
        }
        #expect(files.count == 8)
        let validated = try await Self.python(
            [Self.kubernetesValidate, "--kubernetes-version", Self.kubernetesVersion, "--strict", output]
                + files.map { directory + "/" + $0 })
        #expect(validated.status == 0, "\(validated.output)\(validated.errors)")
        #expect(!validated.output.contains("ERROR"), "\(validated.output)")
    }

    /// The build refuses what would break the manifests: a Service selecting no pods, a probe on
    /// a port no container names, a kustomization field it does not know, a metrics port
    /// Prometheus would scrape in vain.
    @Test(.timeLimit(.minutes(2))) func theKustomizeCheckCatchesBrokenReferences() async throws {
        let source = packageRoot + "/deploy/kubernetes"
        for (file, from, to, says) in [
            ("relay-service.yaml", "app.kubernetes.io/name: chat-relay", "app.kubernetes.io/name: nothing", "selects"),
            ("relay-deployment.yaml", "port: http", "port: web", "is not named"),
            ("kustomization.yaml", "namespace: chat-relay", "namespace: chat-relay\npatches: []", "does not know"),
            ("relay-deployment.yaml", "prometheus.io/port: \"8080\"", "prometheus.io/port: \"9090\"", "not a port"),
            // The security of the deployment: Redis kept to the relays, with a password; no
            // public path to /metrics.
            (
                "network-policy.yaml", "        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: chat-relay",
                "        - namespaceSelector: {}", "more than the relay's pods"
            ),
            ("redis.yaml", "- --requirepass", "- --protected-mode", "a password"),
            ("redis.yaml", "- noeviction", "- allkeys-lru", "noeviction"),
            ("relay-deployment.yaml", "redis://:$(REDIS_PASSWORD)@redis-0", "redis://redis-0", "carry $(REDIS_PASSWORD)"),
            ("ingress.yaml", "- path: /rooms\n", "- path: /\n", "routes /metrics"),
        ] {
            let copy = NSTemporaryDirectory() + "chat-relay-k8s-\(UUID().uuidString)"
            try FileManager.default.copyItem(atPath: source, toPath: copy)
            defer { try? FileManager.default.removeItem(atPath: copy) }
            let text = try String(contentsOfFile: copy + "/" + file, encoding: .utf8)
            try text.replacingOccurrences(of: from, with: to).write(toFile: copy + "/" + file, atomically: true, encoding: .utf8)
            let built = try await Self.python([
                packageRoot + "/scripts/kustomize-build.py", copy, "--prometheus-job",
                packageRoot + "/deploy/prometheus/scrape-kubernetes.yml",
            ])
            #expect(built.status == 1, "\(file): \(from) → \(to) built")
            #expect(built.errors.contains(says), "\(file): \(built.errors)")
        }
    }

    /// `promtool check rules`, `check config` and the rules' unit tests (alerts.test.yml: broker
    /// down and node not ready fire when Redis stops and a node drains, and resolve after).
    @Test(.timeLimit(.minutes(2))) func promtoolChecksTheRulesAndTheirTests() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.promtool), "promtool missing: run make test")
        let directory = packageRoot + "/deploy/prometheus"
        let rules = try await ChildProcess.run(Self.promtool, ["check", "rules", directory + "/alerts.yml"])
        #expect(rules.status == 0, "\(rules.output)\(rules.errors)")
        #expect(rules.output.contains("SUCCESS: 8 rules found"), "\(rules.output)")
        let tests = try await ChildProcess.run(Self.promtool, ["test", "rules", directory + "/alerts.test.yml"])
        #expect(tests.status == 0, "\(tests.output)\(tests.errors)")
        let config = try await ChildProcess.run(Self.promtool, ["check", "config", directory + "/prometheus.yml"])
        #expect(config.status == 0, "\(config.output)\(config.errors)")
    }

    /// The PromQL of every panel of the dashboard.
    static func dashboardQueries() throws -> [(panel: String, expr: String)] {
        let data = try Data(contentsOf: URL(fileURLWithPath: packageRoot + "/deploy/grafana/chat-relay.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        var queries: [(String, String)] = []
        for panel in panels where panel["type"] as? String != "row" {
            let title = panel["title"] as? String ?? "?"
            let targets = panel["targets"] as? [[String: Any]] ?? []
            #expect(!targets.isEmpty, "panel \(title) has a query")
            for target in targets {
                queries.append((title, try #require(target["expr"] as? String)))
            }
        }
        return queries
    }

    /// The metric names a query reads (`chat_relay_…`, with a histogram's suffix taken off).
    static func metricNames(in expr: String) -> Set<String> {
        var names = Set<String>()
        var rest = Substring(expr)
        while let start = rest.range(of: "chat_relay_") {
            let name = rest[start.lowerBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            names.insert(String(name))
            rest = rest[name.endIndex...]
        }
        return names
    }

    /// A real Prometheus (Debian's) scraping three nodes on Redis every second, with the rules
    /// of deploy/prometheus/alerts.yml (their `for:` cut to 2 s): every target up, every
    /// dashboard query valid and about metrics the nodes export, the broker-down and not-ready
    /// alerts firing while Redis is stopped and resolving when it is back, and not-ready firing
    /// for a node that drained, for it alone.
    @Test(.timeLimit(.minutes(4))) func aRealPrometheusScrapesThreeNodesAndItsAlertsFollowRedisAndADrain() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.prometheus), "prometheus missing: run make test")
        let redis = try await RedisServer(appendOnly: false)
        defer { redis.killNow() }
        var nodes: [RelayProcess] = []
        defer { for node in nodes { node.kill() } }
        for index in 0..<3 {
            nodes.append(try await RelayProcess(nodeID: "watched-\(index)", arguments: ["--redis-url", redis.url, "--rate-limit", "0"]))
        }
        let prometheus = try await PrometheusServer(targets: nodes.map { "127.0.0.1:\($0.port)" })
        defer { prometheus.stop() }

        // Every target up, and traffic seen.
        #expect(
            await eventually(timeout: .seconds(30), pause: .milliseconds(200)) {
                (try? await prometheus.query("count(up{job=\"chat-relay\"} == 1)"))?.first?.value == 3
            }, "three targets up:\n\(prometheus.log())")
        let stream = try await SSEClient("\(nodes[0].baseURL)/rooms/watched/events")
        for index in 0..<5 {
            _ = try await HTTP.postMessage("\(nodes[index % 3].baseURL)/rooms/watched/messages", user: "u", text: "m\(index)")
        }
        #expect(await stream.waitForMessages(5))
        #expect(
            await eventually(timeout: .seconds(20), pause: .milliseconds(200)) {
                (try? await prometheus.query("sum(chat_relay_messages_published_total)"))?.first?.value == 5
            })

        // The dashboard: every query runs, and every metric it names is one the nodes export.
        let exported = try await prometheus.metricNames()
        #expect(exported.contains("chat_relay_open_streams") && exported.contains("chat_relay_ready"), "\(exported.sorted())")
        for (panel, expr) in try Self.dashboardQueries() {
            let resolved = expr.replacingOccurrences(of: "$instance", with: ".*").replacingOccurrences(
                of: "$__rate_interval", with: "1m")
            await #expect(throws: Never.self, "panel \(panel): \(expr)") { _ = try await prometheus.query(resolved) }
            for name in Self.metricNames(in: expr) {
                let base = ["_bucket", "_sum", "_count"].reduce(name) { $0.hasSuffix($1) ? String($0.dropLast($1.count)) : $0 }
                #expect(
                    exported.contains(name) || exported.contains(base + "_bucket"), "panel \(panel) reads \(name), which no node exports")
            }
        }
        // The alert rules read exported metrics too.
        let rules = try String(contentsOfFile: packageRoot + "/deploy/prometheus/alerts.yml", encoding: .utf8)
        for name in Self.metricNames(in: rules) {
            #expect(exported.contains(name) || exported.contains(name + "_bucket"), "alerts.yml reads \(name), which no node exports")
        }
        #expect(try await prometheus.firingAlerts().isEmpty, "nothing fires on a healthy cluster")

        // Redis stops: every node's broker is down and it is not ready.
        await redis.kill()
        let downEverywhere = await eventually(timeout: .seconds(30), pause: .milliseconds(200)) {
            let firing = (try? await prometheus.firingAlerts()) ?? []
            return firing.filter { $0.name == "ChatRelayBrokerDown" }.count == 3
                && firing.filter { $0.name == "ChatRelayNodeNotReady" }.count == 3
        }
        var firing = (try? await prometheus.firingAlerts()) ?? []
        #expect(downEverywhere, "broker down and not ready on every node: \(firing)")
        // Back: both resolve.
        try await redis.start()
        let resolved = await eventually(timeout: .seconds(30), pause: .milliseconds(200)) {
            (try? await prometheus.firingAlerts())?.isEmpty == true
        }
        firing = (try? await prometheus.firingAlerts()) ?? []
        #expect(resolved, "resolved: \(firing)")

        // A node drains (SIGTERM) and exits: not ready, for it alone.
        nodes[2].signal(SIGTERM)
        #expect(await nodes[2].waitForExit(timeout: .seconds(20)) == 0)
        let drained = "127.0.0.1:\(nodes[2].port)"
        let drainedAlone = await eventually(timeout: .seconds(30), pause: .milliseconds(200)) {
            let firing = (try? await prometheus.firingAlerts()) ?? []
            return firing.map(\.name) == ["ChatRelayNodeNotReady"] && firing.first?.instance == drained
        }
        firing = (try? await prometheus.firingAlerts()) ?? []
        #expect(drainedAlone, "only the drained node is not ready: \(firing)")
    }
}

/// A real Prometheus on a free loopback port for one test: scrapes `targets` every second as job
/// `chat-relay`, evaluates deploy/prometheus/alerts.yml every second with every `for:` cut to 2 s
/// (the rules' own timings are promtool's to test), keeps its data in a temporary directory.
final class PrometheusServer: Sendable {
    let port: Int
    let directory: String
    private let process: ChildProcess

    init(targets: [String]) async throws {
        port = freeLoopbackPort()
        directory = NSTemporaryDirectory() + "chat-relay-prometheus-\(port)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory + "/data", withIntermediateDirectories: true)
        let rules = try String(contentsOfFile: packageRoot + "/deploy/prometheus/alerts.yml", encoding: .utf8)
        let fast = rules.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.trimmingCharacters(in: .whitespaces).hasPrefix("for:") ? String(line.prefix { $0 == " " }) + "for: 2s" : String(line)
        }.joined(separator: "\n")
        try fast.write(toFile: directory + "/alerts.yml", atomically: true, encoding: .utf8)
        let config = """
            global:
              scrape_interval: 1s
              scrape_timeout: 900ms
              evaluation_interval: 1s
            rule_files:
              - alerts.yml
            scrape_configs:
              - job_name: chat-relay
                static_configs:
                  - targets: [\(targets.map { "'\($0)'" }.joined(separator: ", "))]
            """
        try config.write(toFile: directory + "/prometheus.yml", atomically: true, encoding: .utf8)
        process = try ChildProcess(
            "/usr/bin/prometheus",
            [
                "--config.file=\(directory)/prometheus.yml", "--storage.tsdb.path=\(directory)/data",
                "--web.listen-address=127.0.0.1:\(port)", "--storage.tsdb.retention.time=1h",
            ], logPath: directory + "/prometheus.log")
        let ready = await eventually(timeout: .seconds(30), pause: .milliseconds(200)) {
            (try? await HTTP.get("http://127.0.0.1:\(self.port)/-/ready"))?.status == 200
        }
        guard ready else { throw RelayProcessError.notReady(log: log()) }
    }

    func log() -> String {
        (try? String(contentsOfFile: directory + "/prometheus.log", encoding: .utf8)) ?? ""
    }

    /// The instant vector of `query`: each sample's labels and value.
    func query(_ query: String) async throws -> [(labels: [String: String], value: Double)] {
        let encoded = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        let reply = try await HTTP.get("http://127.0.0.1:\(port)/api/v1/query?query=\(encoded)")
        guard reply.status == 200, let data = reply.json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]]
        else { throw PrometheusError.query(query, reply.body) }
        return result.map { sample in
            let value = (sample["value"] as? [Any])?.last as? String
            return (sample["metric"] as? [String: String] ?? [:], Double(value ?? "") ?? .nan)
        }
    }

    /// Every metric name Prometheus has scraped.
    func metricNames() async throws -> Set<String> {
        let reply = try await HTTP.get("http://127.0.0.1:\(port)/api/v1/label/__name__/values")
        return Set(reply.json["data"] as? [String] ?? [])
    }

    /// The alerts firing now: name and instance, sorted.
    func firingAlerts() async throws -> [FiringAlert] {
        try await query("ALERTS{alertstate=\"firing\"}").map {
            FiringAlert(name: $0.labels["alertname"] ?? "?", instance: $0.labels["instance"] ?? "")
        }.sorted { ($0.name, $0.instance) < ($1.name, $1.instance) }
    }

    func stop() {
        process.signal(SIGKILL)
        if ProcessInfo.processInfo.environment["KEEP_TEST_DATA"] == nil {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }
}

struct FiringAlert: Sendable, CustomStringConvertible {
    let name: String
    let instance: String
    var description: String { "\(name)@\(instance)" }
}

enum PrometheusError: Error {
    case query(String, String)
}

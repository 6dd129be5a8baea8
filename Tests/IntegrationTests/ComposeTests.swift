import Foundation
import TestSupport
import Testing

/// docker-compose.yml itself, really running: podman serves the Docker API, Docker Compose v2
/// drives it. No registry is reachable, so the images come from `scripts/compose-test-images.sh`
/// (a debootstrap-built Debian base and the host-built static release binary) through an
/// override file; the Dockerfile builds the relay image as users build it, with build arguments
/// choosing the bases. `make test` installs podman and Compose and builds the binary first.
@Suite(.serialized) struct ComposeTests {
    static let composeBinary = packageRoot + "/.tools/compose/compose/docker-compose"
    static let releaseBinary = packageRoot + "/.build/release/chat-relay"

    /// Runs a command to its end without blocking a thread; returns its status and output.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String], timeout: Duration = .seconds(300))
        async throws -> (status: Int32?, output: String)
    {
        let log = NSTemporaryDirectory() + "chat-relay-compose-\(UUID().uuidString.prefix(8)).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let child = try ChildProcess(executable, arguments, logPath: log, environment: environment)
        let status = await child.waitForExit(timeout: timeout)
        if status == nil { await child.kill() }
        return (status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// The stack as shipped (`single`: one Redis), and with `deploy/compose.redis-cluster.yml`
    /// (`redis-cluster`: six Redis nodes joined into a cluster by a one-shot service). One at a
    /// time: both use the stack's fixed subnet.
    @Test(.timeLimit(.minutes(10)), arguments: ["single", "redis-cluster"])
    func theComposeStackChatsThroughTheBalancerAndSurvivesAStoppedReplica(redis: String) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.composeBinary), "Docker Compose missing: run make test")
        try #require(FileManager.default.isExecutableFile(atPath: Self.releaseBinary), "release binary missing: run make test")
        // The image has no Swift runtime: a plain `swift build -c release` (the benchmark script
        // runs one) leaves a binary that needs it there.
        let libraries = try await Self.run(
            "/usr/bin/ldd", [Self.releaseBinary], environment: ProcessInfo.processInfo.environment, timeout: .seconds(20))
        try #require(
            !libraries.output.contains("libswiftCore"), "the release binary links the Swift runtime dynamically: run make release-static")
        let work = NSTemporaryDirectory() + "chat-relay-compose-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }

        let environment = ProcessInfo.processInfo.environment.merging([
            "CONTAINERS_CONF": packageRoot + "/scripts/podman-containers.conf",
            "DOCKER_HOST": "unix://\(work)/podman.sock",
            // The classic builder through the API: BuildKit would be pulled from a registry.
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_BAKE": "false",
        ]) { $1 }

        // The Docker API, served by podman for as long as the test runs.
        let service = try ChildProcess(
            "/usr/bin/podman", ["system", "service", "--time=0", "unix://\(work)/podman.sock"], logPath: work + "/podman.log",
            environment: environment)
        defer { service.signal(SIGTERM) }
        #expect(await eventually { FileManager.default.fileExists(atPath: work + "/podman.sock") })

        let images = try await Self.run(packageRoot + "/scripts/compose-test-images.sh", [Self.releaseBinary], environment: environment)
        try #require(images.status == 0, "image build failed:\n\(images.output)")
        let base = images.output.split(separator: "\n").last.map(String.init) ?? ""

        let port = freeLoopbackPort()
        let project = "chatrelay\(port)"
        let clusterImages =
            redis == "redis-cluster"
            ? (1...6).map { "  redis-\($0):\n    image: \(base)\n" }.joined() + "  redis-cluster-init:\n    image: \(base)\n" : ""
        let override = """
            services:
              redis:
                image: \(base)
            \(clusterImages)  relay:
                image: localhost/chat-relay:compose-test
                build:
                  args:
                    BUILDER_IMAGE: \(base)
                    RUNTIME_IMAGE: \(base)
                    BINARY_STAGE: localhost/chat-relay-binary:test
              lb:
                image: \(base)
                # Debian's nginx in the base image; podman's DNS is the network's gateway, not
                # Docker's 127.0.0.11: the resolver address is taken from resolv.conf.
                command: ["/bin/sh", "-c", "sed \\"s/resolver 127.0.0.11 /resolver $$(awk '/^nameserver/ {print $$2; exit}' /etc/resolv.conf) /\\" /etc/nginx/nginx.conf > /tmp/nginx.conf && exec nginx -c /tmp/nginx.conf -g 'daemon off;'"]
                ports: !override
                  - "127.0.0.1:\(port):8080"
            """
        try override.write(toFile: work + "/override.yml", atomically: true, encoding: .utf8)
        let cluster = redis == "redis-cluster" ? ["-f", packageRoot + "/deploy/compose.redis-cluster.yml"] : []
        let compose: [String] = ["-f", packageRoot + "/docker-compose.yml"] + cluster + ["-f", work + "/override.yml", "-p", project]

        let config = try await Self.run(Self.composeBinary, compose + ["config", "-q"], environment: environment)
        #expect(config.status == 0, "docker compose config: \(config.output)")
        let build = try await Self.run(Self.composeBinary, compose + ["build", "relay"], environment: environment)
        try #require(build.status == 0, "the Dockerfile did not build:\n\(build.output)")

        // Nothing runs container health checks without systemd: run them here, every second.
        let checking = Task {
            while !Task.isCancelled {
                if let list = try? await Self.run(
                    "/usr/bin/podman", ["ps", "-q", "--filter", "label=com.docker.compose.project=\(project)"], environment: environment,
                    timeout: .seconds(20))
                {
                    for container in list.output.split(separator: "\n") {
                        _ = try? await Self.run(
                            "/usr/bin/podman", ["healthcheck", "run", String(container)], environment: environment, timeout: .seconds(20))
                    }
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
        defer { checking.cancel() }
        defer {
            // Tear everything down, whatever happened (synchronously: the test is ending).
            if let down = try? ChildProcess(Self.composeBinary, compose + ["down", "-v", "-t", "3"], environment: environment) {
                while down.isRunning { usleep(10_000) }
            }
        }

        let up = try await Self.run(
            Self.composeBinary, compose + ["up", "-d", "--no-build", "--scale", "relay=3"], environment: environment)
        if up.status != 0 {
            // What the containers said, and what their health check says now: the cause is there.
            let logs = try await Self.run(
                Self.composeBinary, compose + ["logs", "--no-color"], environment: environment, timeout: .seconds(30))
            var checks = ""
            let list = try await Self.run(
                "/usr/bin/podman", ["ps", "-aq", "--filter", "label=com.docker.compose.project=\(project)"], environment: environment,
                timeout: .seconds(20))
            for container in list.output.split(separator: "\n") {
                let check = try await Self.run(
                    "/usr/bin/podman", ["healthcheck", "run", String(container)], environment: environment, timeout: .seconds(20))
                checks += "\(container): health check \(check.status.map(String.init) ?? "timed out") \(check.output)\n"
            }
            Issue.record("docker compose up failed:\n\(up.output)\ncontainer logs:\n\(logs.output)\n\(checks)")
            return
        }
        let lb = "http://127.0.0.1:\(port)"
        #expect(
            await eventually(timeout: .seconds(60), pause: .milliseconds(200)) {
                (try? await HTTP.get(lb + "/health/ready", timeout: .seconds(2)))?.status == 200
            },
            "the balancer answers")

        if redis == "redis-cluster" {
            // The relays run on the cluster: each reaches its three masters. Read on a replica
            // itself, as Prometheus does: the balancer keeps /metrics from the public.
            #expect((try await HTTP.get(lb + "/metrics")).status == 404)
            let relays = try await Self.run(
                "/usr/bin/podman",
                [
                    "ps", "-q", "--filter", "label=com.docker.compose.project=\(project)", "--filter",
                    "label=com.docker.compose.service=relay",
                ],
                environment: environment, timeout: .seconds(20))
            let relay = try #require(relays.output.split(separator: "\n").first.map(String.init), "no relay container")
            let fetch = try await Self.run(
                "/usr/bin/podman",
                [
                    "exec", relay, "bash", "-c",
                    #"exec 3<>/dev/tcp/127.0.0.1/8080; printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3; cat <&3"#,
                ], environment: environment, timeout: .seconds(20))
            let shards = fetch.output.split(separator: "\n").filter { $0.hasPrefix("chat_relay_redis_shard_up{") }
            #expect(shards.count == 3 && shards.allSatisfy { Double($0.split(separator: " ").last ?? "") == 1 }, "\(shards)")
        }

        // Streams through the balancer land on every replica.
        var subscribers: [SSEClient] = []
        var nodes = Set<String>()
        while nodes.count < 3, subscribers.count < 30 {
            let subscriber = try await SSEClient(lb + "/rooms/compose/events")
            subscribers.append(subscriber)
            nodes.insert(subscriber.headers.first(name: "X-Relay-Node") ?? "")
        }
        #expect(nodes.count == 3, "X-Relay-Node values through the balancer: \(nodes)")

        let publisher = Publisher()
        for index in 0..<10 { #expect(await publisher.post(lb, room: "compose", text: "before \(index)")) }

        // Stop one replica (SIGTERM, drained) while messages keep coming.
        let stopped = try #require(subscribers.first?.headers.first(name: "X-Relay-Node"))
        let stop = Task {
            try await Self.run("/usr/bin/podman", ["stop", "-t", "15", stopped], environment: environment, timeout: .seconds(30))
        }
        for index in 0..<10 {
            #expect(await publisher.post(lb, room: "compose", text: "during \(index)"))
            try await Task.sleep(for: .milliseconds(200))
        }
        let stopResult = try await stop.value
        #expect(stopResult.status == 0, "podman stop: \(stopResult.output)")
        for index in 0..<5 { #expect(await publisher.post(lb, room: "compose", text: "after \(index)")) }

        let ids = publisher.ids("compose")
        #expect(ids.count == 25)
        for subscriber in subscribers {
            if subscriber.headers.first(name: "X-Relay-Node") == stopped {
                #expect(await subscriber.wait { $0.ended }, "the stopped replica's streams ended")
                let resumed = try await SSEClient(
                    lb + "/rooms/compose/events", headers: [("Last-Event-ID", subscriber.messageIDs.last ?? "0-0")])
                #expect(resumed.headers.first(name: "X-Relay-Node") != stopped)
                #expect(await resumed.waitForMessages(ids.count - subscriber.messageIDs.count))
                #expect(subscriber.messageIDs + resumed.messageIDs == ids, "nothing lost across the stop")
            } else {
                #expect(await subscriber.waitForMessages(ids.count))
                #expect(subscriber.messageIDs == ids)
            }
        }
    }
}

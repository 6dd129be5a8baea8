import Foundation

/// The package's root directory (deploy/, scripts/), found from this file's path.
public let packageRoot: String = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// `scripts/loopback-dns.py` on a free port: one name that resolves to every relay replica,
/// as Docker's DNS does in compose.
public final class LoopbackDNS: Sendable {
    public let port: Int
    private let process: ChildProcess

    public init(name: String, addresses: [String]) async throws {
        port = freeLoopbackPort()
        process = try ChildProcess(
            "/usr/bin/env",
            [
                "python3", packageRoot + "/scripts/loopback-dns.py", "--port", "\(port)", "--name",
                "\(name)=\(addresses.joined(separator: ","))",
            ])
        try await Task.sleep(for: .milliseconds(300))
    }

    public func kill() {
        process.signal(SIGKILL)
    }
}

/// A real nginx or HAProxy on a free loopback port, running the config from deploy/ with only the
/// addresses substituted: the DNS server, the replicas' name and port, the listening port.
public final class ProxyServer: Sendable {
    public enum Kind: String, Sendable, CaseIterable, CustomStringConvertible {
        case nginx
        case haproxy
        public var description: String { rawValue }
    }

    public let kind: Kind
    public let port: Int
    public let directory: String
    public let configPath: String
    private let process: ChildProcess

    public var baseURL: String { "http://127.0.0.1:\(port)" }

    /// The deploy config with only the addresses substituted (by `scripts/proxy-config.sh`, which
    /// `make cluster` uses too), as text.
    public static func config(_ kind: Kind, dnsPort: Int, replicas: String, listenPort: Int) async throws -> String {
        let run = try await ChildProcess.run(
            packageRoot + "/scripts/proxy-config.sh", [kind.rawValue, "\(dnsPort)", replicas, "\(listenPort)"])
        guard run.status == 0 else { throw ProxyError.failed("proxy-config.sh failed: \(run.errors)") }
        return run.output
    }

    /// Checks a config with the proxy itself (`nginx -t`, `haproxy -c`); returns its output on failure.
    public static func validate(_ kind: Kind, configPath: String, directory: String) async throws -> (ok: Bool, output: String) {
        let run =
            switch kind {
            case .nginx:
                try await ChildProcess.run(
                    "/usr/sbin/nginx", ["-t", "-p", directory, "-c", configPath, "-g", "pid \(directory)/nginx.pid;"])
            case .haproxy:
                try await ChildProcess.run("/usr/sbin/haproxy", ["-c", "-f", configPath])
            }
        return (run.status == 0, run.output + run.errors)
    }

    public init(_ kind: Kind, dnsPort: Int, replicas: String) async throws {
        self.kind = kind
        port = freeLoopbackPort()
        directory = NSTemporaryDirectory() + "chat-relay-\(kind)-\(port)"
        try FileManager.default.createDirectory(atPath: directory + "/logs", withIntermediateDirectories: true)
        configPath = directory + (kind == .nginx ? "/nginx.conf" : "/haproxy.cfg")
        try await Self.config(kind, dnsPort: dnsPort, replicas: replicas, listenPort: port).write(
            toFile: configPath, atomically: true, encoding: .utf8)
        let validation = try await Self.validate(kind, configPath: configPath, directory: directory)
        guard validation.ok else { throw ProxyError.failed("\(kind) refused its config:\n\(validation.output)") }

        let logPath = directory + "/output.log"
        switch kind {
        case .nginx:
            // One process (no master), in the foreground: stopped by pid like every test server.
            process = try ChildProcess(
                "/usr/sbin/nginx",
                ["-p", directory, "-c", configPath, "-g", "pid \(directory)/nginx.pid; daemon off; master_process off;"], logPath: logPath)
        case .haproxy:
            process = try ChildProcess("/usr/sbin/haproxy", ["-db", "-f", configPath], logPath: logPath)
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if (try? RawSocket(port: port)) != nil { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ProxyError.failed("\(kind) did not listen: \(self.log())")
    }

    public func log() -> String {
        (try? String(contentsOfFile: directory + "/output.log", encoding: .utf8)) ?? ""
    }

    public func kill() {
        process.signal(SIGKILL)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

public enum ProxyError: Error, CustomStringConvertible {
    case failed(String)
    public var description: String {
        switch self {
        case .failed(let text): text
        }
    }
}

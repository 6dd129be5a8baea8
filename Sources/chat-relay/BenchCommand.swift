import ArgumentParser
import Foundation
import RelayBench

/// `chat-relay bench`: the load generator used for the published numbers.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure delivery latency, loss and throughput of relay nodes (or Nchan) under load.",
        discussion: """
            Opens --subscribers SSE streams spread over the --target URLs, publishes messages at --rate
            over keep-alive POSTs, and counts what every stream receives. Each message carries its
            sequence number and send time. Latency is reported from the send and from the moment the
            message was due by the schedule, so a server that slows the publisher down is not hidden.
            Exits 0 when every accepted message reached every subscriber exactly once and in order,
            1 when anything was lost, duplicated, reordered or refused, 2 when the run could not start.
            A relay under test should run with --rate-limit 0.
            """
    )

    @Option(
        name: .customLong("target"),
        help:
            "A server to subscribe on: http://host:port. Repeat it, or separate with commas, to spread the streams (and POSTs) over several nodes."
    )
    var targets: [String] = ["http://127.0.0.1:8080"]

    @Option(name: .customLong("publish-target"), help: "Where to POST instead of the targets (repeatable).")
    var publishTargets: [String] = []

    @Option(help: "Paths to use: relay (/rooms/{room}/events and /rooms/{room}/messages) or nchan (/sub/{room} and /pub/{room}).")
    var preset: Preset = .relay

    @Option(name: .customLong("subscribe-path"), help: "Subscribe path, overriding --preset; {room} is replaced.")
    var subscribePath: String?

    @Option(name: .customLong("publish-path"), help: "Publish path, overriding --preset; {room} is replaced.")
    var publishPath: String?

    @Option(help: "Room to use (default: a new random one, so history from earlier runs does not interfere).")
    var room: String?

    @Option(
        help:
            "Rooms to spread over: subscriber j follows room j mod N, message n goes to room n mod N; the rooms are <room>-0 … <room>-(N-1)."
    )
    var rooms: Int = 1

    @Flag(
        help:
            "With --rooms N (2 to 100): each subscriber opens one stream of all N rooms (GET /events?room=…&room=…) and gets every message, instead of one stream of one room."
    )
    var oneStreamOfAllRooms = false

    @Option(
        help:
            "With several targets: spread (a room's subscribers round robin over the targets) or together (all of a room's subscribers on one target)."
    )
    var placement: Placement = .spread

    @Option(help: "SSE streams to open.")
    var subscribers: Int = 100

    @Option(help: "Messages per second.")
    var rate: Double = 10

    @Option(help: "Messages to send (default: --rate × --duration).")
    var messages: Int?

    @Option(help: "Seconds to publish for, when --messages is not given.")
    var duration: Double = 10

    @Option(help: "Keep-alive connections the publisher uses.")
    var publishers: Int = 4

    @Option(name: .customLong("message-size"), help: "Bytes of each POST body, about (at least the sequence number and send time).")
    var messageSize: Int = 100

    @Option(name: .customLong("connect-concurrency"), help: "Streams being opened at once.")
    var connectConcurrency: Int = 128

    @Option(help: "Seconds to wait between the last stream opening and the first message.")
    var settle: Double = 0.5

    @Option(name: .customLong("drain-timeout"), help: "Seconds to wait after the last POST for deliveries still on the way.")
    var drainTimeout: Double = 10

    @Option(help: "Event loop threads reading the streams (default: the number of cores); the publisher has a thread of its own.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Flag(help: "Print the report as one JSON object instead of text.")
    var json = false

    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    enum Preset: String, ExpressibleByArgument, CaseIterable {
        case relay, nchan
    }

    enum Placement: String, ExpressibleByArgument, CaseIterable {
        case spread, together
    }

    func run() async throws {
        let targets = try Self.parse(targets, flag: "--target")
        let publishTargets = try Self.parse(publishTargets, flag: "--publish-target")
        var paths: BenchProtocol = preset == .relay ? .relay : .nchan
        if let subscribePath { paths.subscribePath = subscribePath }
        if let publishPath { paths.publishPath = publishPath }
        let configuration = BenchConfiguration(
            targets: targets,
            publishTargets: publishTargets.isEmpty ? nil : publishTargets,
            paths: paths,
            room: room ?? "bench-\(UInt32.random(in: 0...UInt32.max))",
            rooms: rooms,
            oneStreamOfAllRooms: oneStreamOfAllRooms,
            placement: placement == .spread ? .spread : .together,
            subscribers: subscribers,
            rate: rate,
            messages: messages ?? max(1, Int((rate * duration).rounded())),
            publishers: publishers,
            messageSize: messageSize,
            connectConcurrency: connectConcurrency,
            settle: settle,
            drainTimeout: drainTimeout,
            threads: threads,
            progressInterval: quiet ? 0 : 1
        )
        let quiet = self.quiet
        FileLimit.raiseToHardLimit()
        let report: BenchReport
        do {
            report = try await BenchRun(configuration: configuration) { line in
                if !quiet { FileHandle.standardError.write(Data("bench: \(line)\n".utf8)) }
            }.run()
        } catch {
            FileHandle.standardError.write(Data("bench: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.text)
        }
        if !report.isClean { throw ExitCode(1) }
    }

    private static func parse(_ values: [String], flag: String) throws -> [BenchTarget] {
        try values.flatMap { $0.split(separator: ",") }.map { text in
            guard let target = BenchTarget(url: String(text).trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("\(flag) \(text): expected http://host:port")
            }
            return target
        }
    }
}

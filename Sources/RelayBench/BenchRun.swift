import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One benchmark run: opens the subscribers, publishes on schedule, waits for the deliveries,
/// counts every loss and measures every latency.
public struct BenchRun: Sendable {
    public let configuration: BenchConfiguration
    /// Where progress lines go (stderr in the CLI).
    public let progress: @Sendable (String) -> Void

    public init(configuration: BenchConfiguration, progress: @escaping @Sendable (String) -> Void = { _ in }) {
        self.configuration = configuration
        self.progress = progress
    }

    public func run() async throws -> BenchReport {
        try configuration.validate()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.threads)
        // The publisher has a thread of its own: on a loop that also reads streams it would send
        // late, and read its answers late, whenever a burst of deliveries arrived, and the
        // schedule would charge that delay to the server.
        let publishGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let report = try await run(on: group, publishingOn: publishGroup.next())
            try? await group.shutdownGracefully()
            try? await publishGroup.shutdownGracefully()
            return report
        } catch {
            try? await group.shutdownGracefully()
            try? await publishGroup.shutdownGracefully()
            throw error
        }
    }

    private func run(on group: MultiThreadedEventLoopGroup, publishingOn publishLoop: any EventLoop) async throws -> BenchReport {
        let config = configuration
        let loops = Array(group.makeIterator())
        let stats = loops.map { _ in LoopStats() }

        // 1. Subscribers, a window of them opening at once, spread over loops and targets.
        progress("opening \(config.subscribers) streams on \(config.targets.map(\.description).joined(separator: " "))")
        let opening = ContinuousClock.now
        let subscribePaths = (0..<config.rooms).map { config.paths.subscribe(room: config.roomName($0)) }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            var started = 0
            func startNext() {
                let index = started
                started += 1
                let loopIndex = index % loops.count
                let (room, target) = config.subscriberPlacement(index)
                tasks.addTask {
                    // Following every room, a subscriber gets every message, as with one room.
                    let all = config.oneStreamOfAllRooms
                    try? await Self.openStream(
                        target: config.targets[target], path: all ? config.allRoomsPath : subscribePaths[room], messages: config.messages,
                        room: all ? 0 : room, rooms: all ? 1 : config.rooms, loop: loops[loopIndex], stats: stats[loopIndex])
                }
            }
            while started < min(config.connectConcurrency, config.subscribers) { startNext() }
            while try await tasks.next() != nil {
                if started < config.subscribers { startNext() }
            }
        }
        let opened = try await Self.collect(stats, on: loops)
        progress(
            "\(opened.connected) streams open in \(ContinuousClock.now - opening)"
                + (opened.failures.isEmpty ? "" : ", refused: \(opened.failures)"))
        guard opened.connected > 0 else {
            throw BenchError.streamRefused(opened.failures.map { "\($0.value) × \($0.key)" }.joined(separator: ", "))
        }
        try await Task.sleep(for: .seconds(config.settle))

        // 2. The publisher, with all its connections, on its own loop.
        let scheduler = PublishScheduler(loop: publishLoop, count: config.messages, rate: config.rate)
        let publishPaths = (0..<config.rooms).map { config.paths.publish(room: config.roomName($0)) }
        for index in 0..<config.publishers {
            let target = config.publishTargets[index % config.publishTargets.count]
            do {
                _ = try await ClientBootstrap(group: publishLoop)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHTTPClientHandlers()
                            let handler = PublisherHandler(
                                target: target, paths: publishPaths, size: config.messageSize, scheduler: scheduler)
                            try channel.pipeline.syncOperations.addHandler(handler)
                            scheduler.add(handler)
                        }
                    }
                    .connect(host: target.host, port: target.port).get()
            } catch {
                throw BenchError.connectFailed("publisher to \(target): \(error)")
            }
        }

        // 3. Publish on schedule; every loop learns the schedule first, for latency from it.
        let cpuBefore = CPUTime.ofThisProcess()
        let start = NIODeadline.now().uptimeNanoseconds + 20_000_000
        for (loop, loopStats) in zip(loops, stats) {
            try await loop.submit {
                loopStats.scheduleStart = start
                loopStats.interval = scheduler.interval
            }.get()
        }
        progress(
            "publishing \(config.messages) messages at \(config.rate)/s to \(config.publishTargets.map(\.description).joined(separator: " "))"
        )
        try await publishLoop.submit { scheduler.begin(at: start) }.get()
        let reporter = Task {
            guard config.progressInterval > 0 else { return }
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(config.progressInterval))
                let now = try await Self.collect(stats, on: loops)
                let sent = try await publishLoop.submit { scheduler.sent }.get()
                let seconds = Double(NIODeadline.now().uptimeNanoseconds &- start) / 1e9
                progress(
                    "\(Int(seconds))s sent \(sent)/\(config.messages) delivered \(now.delivered) (\(Int(Double(now.delivered) / max(seconds, 0.001)))/s) p99 \(BenchReport.Latency(now.fromSchedule).p99) ms streams \(now.connected)"
                )
            }
        }
        defer { reporter.cancel() }
        try await scheduler.done.get()

        // 4. Wait for what is still on its way, then count what is missing.
        let accepted = try await publishLoop.submit { scheduler.accepted }.get()
        let deadline = ContinuousClock.now + .seconds(config.drainTimeout)
        var missing = try await Self.missing(accepted, stats, on: loops)
        while missing > 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            missing = try await Self.missing(accepted, stats, on: loops)
        }
        let cpuUsed = CPUTime.ofThisProcess() - cpuBefore
        reporter.cancel()

        let final = try await Self.collect(stats, on: loops)
        let streams = try await withThrowingTaskGroup(of: Int.self) { tasks in
            for (loop, loopStats) in zip(loops, stats) { tasks.addTask { try await loop.submit { loopStats.ledgers.count }.get() } }
            return try await tasks.reduce(0, +)
        }
        let published = try await publishLoop.submit {
            (
                sent: scheduler.sent, accepted: scheduler.acceptedCount, failures: scheduler.failures,
                first: scheduler.firstSent, last: scheduler.lastSent, response: scheduler.responseTime
            )
        }.get()
        let end = max(final.lastDelivery, published.last)
        let seconds = Double(end > start ? end - start : 0) / 1e9
        let sendSeconds = Double(published.last &- published.first) / 1e9
        return BenchReport(
            targets: config.targets.map(\.description),
            room: config.rooms == 1
                ? config.room
                : "\(config.room)-0…\(config.rooms - 1) (\(config.oneStreamOfAllRooms ? "one stream of all" : "\(config.placement)"))",
            subscribers: config.subscribers,
            connected: final.connected,
            refused: final.failures,
            disconnected: final.disconnected,
            rateAsked: config.rate,
            rateAchieved: published.sent > 1 && sendSeconds > 0 ? Double(published.sent - 1) / sendSeconds : 0,
            messagesSent: published.sent,
            messagesAccepted: published.accepted,
            publishFailures: published.failures,
            // One room: every stream gets every message; several: each its room's share.
            deliveriesExpected: config.rooms == 1 || config.oneStreamOfAllRooms ? published.accepted * streams : final.delivered + missing,
            delivered: final.delivered,
            lost: missing,
            duplicated: final.duplicates,
            outOfOrder: final.outOfOrder,
            deliveriesPerSecond: seconds > 0 ? Double(final.delivered) / seconds : 0,
            latencyFromSend: .init(final.fromSend),
            latencyFromSchedule: .init(final.fromSchedule),
            publishResponse: .init(published.response),
            seconds: seconds,
            clientCPUSeconds: cpuUsed,
            clientCPUMicrosecondsPerDelivery: final.delivered > 0 ? cpuUsed * 1e6 / Double(final.delivered) : 0
        )
    }

    private static func openStream(
        target: BenchTarget, path: String, messages: Int, room: Int, rooms: Int, loop: any EventLoop, stats: LoopStats
    ) async throws {
        let opened = loop.makePromise(of: Void.self)
        do {
            _ = try await ClientBootstrap(group: loop)
                .connectTimeout(.seconds(10))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(
                            SubscriberHandler(
                                target: target, path: path, messages: messages, room: room, rooms: rooms, stats: stats, opened: opened))
                    }
                }
                .connect(host: target.host, port: target.port).get()
        } catch {
            try await loop.submit {
                stats.failures["connect: \(error)", default: 0] += 1
            }.get()
            opened.fail(error)
        }
        try await opened.futureResult.get()
    }

    private static func collect(_ stats: [LoopStats], on loops: [any EventLoop]) async throws -> LoopStats.Snapshot {
        var snapshots: [LoopStats.Snapshot] = []
        for (loop, loopStats) in zip(loops, stats) {
            snapshots.append(try await loop.submit { loopStats.snapshot() }.get())
        }
        return .merged(snapshots)
    }

    private static func missing(_ accepted: [UInt64], _ stats: [LoopStats], on loops: [any EventLoop]) async throws -> Int {
        var missing = 0
        for (loop, loopStats) in zip(loops, stats) {
            missing += try await loop.submit { loopStats.ledgers.reduce(0) { $0 + $1.ledger.missing(of: accepted) } }.get()
        }
        return missing
    }
}

/// CPU time (user + system) of this process.
enum CPUTime {
    static func ofThisProcess() -> Double {
        var usage = rusage()
        #if canImport(Glibc)
            getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        #else
            getrusage(RUSAGE_SELF, &usage)
        #endif
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}

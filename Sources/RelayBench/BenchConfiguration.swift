/// What one benchmark run does.
public struct BenchConfiguration: Sendable {
    /// Servers the subscribers spread over, round robin.
    public var targets: [BenchTarget]
    /// Servers the publisher's connections spread over (the targets by default).
    public var publishTargets: [BenchTarget]
    public var paths: BenchProtocol
    public var room: String
    public var subscribers: Int
    /// Messages per second.
    public var rate: Double
    public var messages: Int
    /// Keep-alive publishing connections.
    public var publishers: Int
    /// Bytes of each POST body, about.
    public var messageSize: Int
    /// Streams being opened at once.
    public var connectConcurrency: Int
    /// Seconds to wait between the last stream opening and the first message.
    public var settle: Double
    /// Seconds to wait after the last answer for deliveries still on the way.
    public var drainTimeout: Double
    /// Event loop threads of the load generator.
    public var threads: Int
    /// Seconds between progress lines (0: none).
    public var progressInterval: Double

    public init(
        targets: [BenchTarget], publishTargets: [BenchTarget]? = nil, paths: BenchProtocol = .relay, room: String,
        subscribers: Int, rate: Double, messages: Int, publishers: Int = 4, messageSize: Int = 100,
        connectConcurrency: Int = 128, settle: Double = 0.5, drainTimeout: Double = 10, threads: Int = 2,
        progressInterval: Double = 1
    ) {
        self.targets = targets
        self.publishTargets = publishTargets ?? targets
        self.paths = paths
        self.room = room
        self.subscribers = subscribers
        self.rate = rate
        self.messages = messages
        self.publishers = publishers
        self.messageSize = messageSize
        self.connectConcurrency = connectConcurrency
        self.settle = settle
        self.drainTimeout = drainTimeout
        self.threads = threads
        self.progressInterval = progressInterval
    }

    func validate() throws(BenchError) {
        guard !targets.isEmpty, !publishTargets.isEmpty else { throw .invalidConfiguration("give at least one --target") }
        guard subscribers >= 1 else { throw .invalidConfiguration("--subscribers must be at least 1") }
        guard rate > 0 else { throw .invalidConfiguration("--rate must be above 0") }
        guard messages >= 1 else { throw .invalidConfiguration("send at least one message (--messages or --duration)") }
        guard publishers >= 1 else { throw .invalidConfiguration("--publishers must be at least 1") }
        guard threads >= 1 else { throw .invalidConfiguration("--threads must be at least 1") }
        guard room.utf8.allSatisfy({ $0 < 0x80 && $0 != UInt8(ascii: "/") && $0 > 0x20 }) else {
            throw .invalidConfiguration("--room must be printable ASCII without / or spaces")
        }
    }
}

/// What one benchmark run does.
public struct BenchConfiguration: Sendable {
    /// Servers the subscribers spread over, round robin.
    public var targets: [BenchTarget]
    /// Servers the publisher's connections spread over (the targets by default).
    public var publishTargets: [BenchTarget]
    public var paths: BenchProtocol
    /// The room, or with `rooms` above 1 the rooms' common prefix (`<room>-0`, `<room>-1`, …).
    public var room: String
    /// Rooms the subscribers and messages are spread over: subscriber `j` follows room `j % rooms`,
    /// message `n` goes to room `n % rooms`.
    public var rooms: Int
    /// Each subscriber follows every room on one stream (`GET /events?room=…&room=…`, chat-relay
    /// only) and gets every message.
    public var oneStreamOfAllRooms: Bool
    /// Which server each room's subscribers connect to.
    public var placement: BenchPlacement
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
        rooms: Int = 1, oneStreamOfAllRooms: Bool = false, placement: BenchPlacement = .spread, subscribers: Int, rate: Double,
        messages: Int, publishers: Int = 4,
        messageSize: Int = 100,
        connectConcurrency: Int = 128, settle: Double = 0.5, drainTimeout: Double = 10, threads: Int = 2,
        progressInterval: Double = 1
    ) {
        self.targets = targets
        self.publishTargets = publishTargets ?? targets
        self.paths = paths
        self.room = room
        self.rooms = rooms
        self.oneStreamOfAllRooms = oneStreamOfAllRooms
        self.placement = placement
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
        guard rooms >= 1, rooms <= subscribers else { throw .invalidConfiguration("--rooms must be from 1 to --subscribers") }
        if oneStreamOfAllRooms {
            guard (2...100).contains(rooms) else {
                throw .invalidConfiguration("--one-stream-of-all-rooms takes --rooms from 2 to 100")
            }
            guard paths == .relay else { throw .invalidConfiguration("--one-stream-of-all-rooms is chat-relay's API only") }
        }
        guard rate > 0 else { throw .invalidConfiguration("--rate must be above 0") }
        guard messages >= 1 else { throw .invalidConfiguration("send at least one message (--messages or --duration)") }
        guard publishers >= 1 else { throw .invalidConfiguration("--publishers must be at least 1") }
        guard threads >= 1 else { throw .invalidConfiguration("--threads must be at least 1") }
        guard room.utf8.allSatisfy({ $0 < 0x80 && $0 != UInt8(ascii: "/") && $0 > 0x20 }) else {
            throw .invalidConfiguration("--room must be printable ASCII without / or spaces")
        }
    }

    /// The path of one stream of every room.
    var allRoomsPath: String {
        "/events?" + (0..<rooms).map { "room=\(roomName($0))" }.joined(separator: "&")
    }

    /// The name of room `index`.
    func roomName(_ index: Int) -> String { rooms == 1 ? room : "\(room)-\(index)" }

    /// The room subscriber `index` follows, and the target it connects to.
    func subscriberPlacement(_ index: Int) -> (room: Int, target: Int) {
        let room = index % rooms
        let nth = index / rooms
        switch placement {
        case .spread: return (room, (room + nth) % targets.count)
        case .together: return (room, room % targets.count)
        }
    }
}

/// Where a room's subscribers go when there are several targets.
public enum BenchPlacement: String, Sendable, CaseIterable {
    /// Round robin: a room's subscribers on different servers (each server serves most rooms).
    case spread
    /// A room's subscribers all on one server (each server serves a share of the rooms).
    case together
}

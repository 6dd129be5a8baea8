import NIOCore

/// Where messages are stored and how they reach every node: the seam between the embedded
/// single-node default and the Redis cluster.
///
/// The contract both implementations keep:
/// - `publish` returns only once the message is durable in the room's history *and* has been sent
///   on the live channel; its id is assigned by the broker and increases per room.
/// - Live events of every room with subscribers on this node reach it, delivered to the
///   `LiveEventSink` the broker was made with, in id order per room, from the moment `listen`
///   returned for the room. A node's own messages come back the same way, and only that way (so
///   they are delivered once).
/// - History is read by range after an id.
public protocol Broker: Sendable {
    /// `"embedded"` or `"redis"`: shown by `/health/ready`.
    var kind: String { get }

    /// True when this node can both publish and receive now.
    var isReady: Bool { get }

    /// Stores the message and publishes it live. With an idempotency key its poster already used
    /// for the same room within ``IdempotencyCache/window``, stores nothing and returns the first
    /// message instead, or `keyReused` if `draft` is not what it stored.
    /// - Throws: ``BrokerError/unavailable(_:)`` when the message was not accepted.
    func publish(_ draft: MessageDraft, idempotency: Idempotency?) async throws -> PublishOutcome

    /// Relays a signal (`StoredMessage(signal:…)`: typing, presence) to the streams of its room on
    /// every node, live only: never stored, never replayed, not in the id order of messages.
    /// - Throws: ``BrokerError/unavailable(_:)`` when it could not be sent.
    func signal(_ signal: StoredMessage) async throws

    /// Stores this node's entries for members of rooms, in order (removes one at 0 connections),
    /// and sends each to every node's `LiveEventSink.presence`, this one's too.
    func updatePresence(_ entries: [PresenceEntry]) async throws

    /// The entries of every live node for `room`.
    func presence(room: RoomName) async throws -> [PresenceEntry]

    /// Makes sure live events of `room` reach this node: called for each new stream after it is
    /// registered with the sink and before its replay is read, so that every message is in the
    /// replay or arrives live (or both: the stream drops what it has).
    /// - Throws: ``BrokerError/unavailable(_:)`` when the broker cannot yet or any more (the node
    ///   is starting or stopping).
    func listen(room: RoomName) async throws

    /// The retained messages after `id`, at most `limit` of them (the oldest), and whether some
    /// were already lost (the `reset` case).
    func replay(room: RoomName, after id: MessageID, limit: Int) async throws -> Replay

    /// The newest message id of the room, if it has any: where a new subscriber without
    /// `Last-Event-ID` starts, so that it too has a position to resume from after an outage.
    func latestID(room: RoomName) async throws -> MessageID?

    /// Up to `limit` messages: after `id` (oldest first) or, with no id, the newest `limit`.
    func history(room: RoomName, after id: MessageID?, limit: Int) async throws -> [StoredMessage]

    /// Runs the broker's connections until the task is cancelled; returns (does not throw) when cancelled.
    func run() async throws

    /// Keeps `value` under `ticket` for `ttl`, for one `redeemTicket` on any node of the cluster.
    /// - Throws: ``BrokerError/unavailable(_:)`` when it was not stored.
    func storeTicket(_ ticket: String, value: [UInt8], ttl: Duration) async throws

    /// The value stored under `ticket`, removed in the same step: a second call, on this node or
    /// any other, gets nil; so does one after the ticket's time.
    func redeemTicket(_ ticket: String) async throws -> [UInt8]?
}

/// What `publish` did.
public enum PublishOutcome: Sendable {
    /// Stored now: `201 Created`.
    case created(StoredMessage)
    /// The idempotency key was used before: nothing stored, `200 OK` with the first message.
    case duplicate(StoredMessage)
    /// The idempotency key stored another message: nothing stored, `422`.
    case keyReused
}

/// Receives the live events of the rooms with subscribers on this node, in order per room (the
/// node's hub).
public protocol LiveEventSink: Sendable {
    /// Hands `message` to every subscriber of its room on this node, whatever their event loops.
    func deliver(_ message: StoredMessage)

    /// For every room with subscribers on this node that `include` accepts, the id after which the
    /// least advanced of them still needs messages: where a broker that lost the live channel of
    /// those rooms reads history to fill the gap.
    func resumePositions(of include: @escaping @Sendable (RoomName) -> Bool) async -> [RoomName: MessageID]

    /// Who is in which room (`PresenceBook`): the broker hands it every node's entries and the
    /// nodes that are gone, and stores its own entries again after losing them.
    var presence: PresenceBook { get }

    /// Whether `room` has subscribers on this node now (registered, live or not): a broker keeps
    /// the room's channel subscribed while this is true.
    func hasSubscribers(room: RoomName) -> Bool
}

/// A broker failure that a client can retry.
public enum BrokerError: Error, Sendable, CustomStringConvertible {
    /// The broker cannot take or serve the request now; nothing was stored.
    case unavailable(String)
    /// The message was stored, but fewer replicas than required (`--redis-min-replicas-ack`)
    /// confirmed it in time: a retry with the same idempotency key gets it back once they do.
    case unreplicated(acknowledged: Int, required: Int)
    /// The store refused the write for want of memory (Redis at its `maxmemory`, with the
    /// `noeviction` policy the deployments set): nothing was stored.
    case full(String)

    public var description: String {
        switch self {
        case .unavailable(let reason): "broker unavailable: \(reason)"
        case .unreplicated(let acknowledged, let required): "stored, but \(acknowledged) of \(required) replicas confirmed it"
        case .full(let reason): "broker full: \(reason)"
        }
    }
}

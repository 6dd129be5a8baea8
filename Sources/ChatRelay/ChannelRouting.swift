/// How live events travel from Redis to the nodes (`--redis-channels`).
public enum ChannelRouting: String, Sendable, CaseIterable {
    /// A channel per room (`<prefix>:events:<room>`): an event of a room reaches only the nodes
    /// that have subscribers of that room, once each, and a node with none hears nothing. A node
    /// subscribes to a room's channel when the room's first stream arrives, before the stream's
    /// replay is read, and gives it up some time (the linger) after the last one left.
    case room
    /// One channel for every room (`<prefix>:events`), which every node subscribes to: each node receives every event and drops those of rooms it does not serve.
    /// Cheaper only where there are few rooms and every node serves all of them.
    case shared
}

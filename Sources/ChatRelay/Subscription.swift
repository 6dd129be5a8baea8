import NIOCore
import Synchronization

/// One SSE stream: its connection, its rooms and its position in each, and how it ends.
///
/// A stream follows one room (its events carry the messages' own ids) or several (each event's
/// id is the stream's position in all of them, written by `MultiRoomFraming`). Either way it is
/// one subscriber of the node: one connection, one place in the connection limit, one heartbeat,
/// one end.
///
/// Live events are written to the connection by the hub's fan-out on the connection's event loop
/// (see `LoopFanout`); the stream's HTTP handler only writes the opening and replay, then waits in
/// `closed()` until the stream ends. So an event costs each subscriber one buffered write and a
/// share of one flush: no task wake-up, continuation or copy.
///
/// Invariant that makes `@unchecked Sendable` true: the `var`s below the `loop-confined` mark are
/// read and written only on `output.eventLoop` (the fan-out runs there and every other access hops
/// there; asserted); `ending` is a `Mutex`; everything else is immutable.
public final class Subscription: @unchecked Sendable {
    /// Why a stream ends.
    public enum CloseReason: Sendable, Equatable {
        /// The client is not reading fast enough: its connection was closed.
        case slow
        /// The node is draining; the client should reconnect after this many milliseconds.
        case draining(retryMilliseconds: Int)
        /// The client went away or the server is stopping.
        case finished
        /// The token the stream was opened with expired: `event: token-expired`, then the end.
        case tokenExpired
    }

    /// The stream's rooms, in its order (one for most streams).
    public let rooms: [RoomName]
    /// The stream's first (most often only) room.
    public var room: RoomName { rooms[0] }
    let output: any StreamOutput
    let fanout: LoopFanout
    /// Events that may wait for this subscriber (queued before it goes live, or written while its
    /// connection is above its high-water mark) before it is disconnected as slow.
    let capacity: Int
    /// The node's presence, when the stream asked for `event: presence`: its first presence event
    /// of each room is taken as it goes live (see `goLive`).
    let presence: PresenceBook?
    /// Whether the stream asked for `event: presence`.
    public var wantsPresence: Bool { presence != nil }

    /// An event queued before the stream went live, with the index of its room.
    struct Pending {
        let room: Int
        let message: StoredMessage
    }

    /// Where the stream is in one of its rooms.
    struct Place {
        /// Events at or below this id were already sent or queued: dropped, so none is sent twice.
        var floor: MessageID?
        /// Index in the fan-out's list of the room's subscribers, or -1 when not in it.
        var slot = -1
    }

    /// A stream of several rooms' `id:` lines, boxed: a stream of one room holds a nil pointer,
    /// not the framing's fields (memory per idle stream).
    private final class Framing {
        var value: MultiRoomFraming
        init(_ value: MultiRoomFraming) { self.value = value }
    }

    // loop-confined
    /// Per room, in the order of `rooms`.
    var places: [Place]
    /// False while the opening and replay are being written: events queue in `pending`.
    var live = false
    /// Heartbeats in a row that found the connection above its high-water mark (next to `live`,
    /// in what would be its padding).
    var stalledHeartbeats: UInt8 = 0
    var pending: [Pending] = []
    /// Monotonic nanoseconds of the latest write (for heartbeats).
    var lastWrite: UInt64
    /// Events written while the connection was not writable, since it last was.
    var unwritableWrites = 0
    var ended = false
    /// With several rooms: writes the `id:` lines.
    private var framing: Framing?

    private struct Ending {
        /// Set once, by the first `close`.
        var reason: CloseReason?
        /// Set on the event loop once the last bytes (a drain's `retry:`) were queued.
        var done: CloseReason?
        var waiter: CheckedContinuation<CloseReason, Never>?
    }
    private let ending = Mutex(Ending())

    /// - Parameter floors: per room, the id the subscriber already has (nothing at or below it
    ///   is written).
    init(
        rooms: [RoomName], after floors: [MessageID?], capacity: Int, presence: PresenceBook? = nil, output: any StreamOutput,
        fanout: LoopFanout, now: UInt64
    ) {
        precondition(!rooms.isEmpty && rooms.count == floors.count, "a stream has rooms, and a position in each")
        self.rooms = rooms
        self.places = floors.map { Place(floor: $0) }
        self.capacity = capacity
        self.presence = presence
        self.output = output
        self.fanout = fanout
        self.lastWrite = now
    }

    /// Ends the replay phase of a stream of one room: from now on events are written as they
    /// come. Queued events after `lastReplayed` are written first. Call after the opening and
    /// replay were written, from the stream's handler: the write it did is queued on the event
    /// loop before this hop.
    public func goLive(after lastReplayed: MessageID?) {
        precondition(rooms.count == 1, "a stream of several rooms goes live with a position")
        goLive(afterEach: [lastReplayed ?? .zero], framing: nil)
    }

    /// Ends the replay phase of a stream of several rooms, which stands at `framing.position`
    /// after its opening (the replay's last id in each room, or where the client was): as
    /// `goLive(after:)` does, room by room, and goes on writing ids from that position.
    public func goLive(with framing: MultiRoomFraming) {
        precondition(framing.rooms == rooms, "the framing of this stream's rooms")
        goLive(afterEach: framing.position.ids, framing: framing)
    }

    private func goLive(afterEach replayed: [MessageID], framing: MultiRoomFraming?) {
        output.eventLoop.execute { [self] in
            guard !ended else { return }
            self.framing = framing.map(Framing.init)
            for index in rooms.indices {
                places[index].floor = max(places[index].floor ?? replayed[index], replayed[index])
            }
            // Queued in id order per room: those the replay did not have are a suffix of each room's.
            let rest = pending.filter { $0.message.id > replayed[$0.room] }
            pending = []
            live = true
            if let presence {
                // Who is in each room, taken here on the loop: a change flushed after this is
                // delivered to this loop after it, so the stream gets it (now live); one flushed
                // before is in what this says (the stream may get it too: applied again, a change
                // changes nothing). Taken before, a change flushed in between would be lost to it.
                for room in rooms { output.write(presence.snapshot(room).chunk) }
                lastWrite = MonotonicClock.nanoseconds()
                if rest.isEmpty { output.flush() }
            }
            if !rest.isEmpty {
                var start = rest.startIndex
                while start < rest.endIndex {
                    // Runs of one room, written as the fan-out would.
                    var end = start + 1
                    while end < rest.endIndex, rest[end].room == rest[start].room { end += 1 }
                    write(rest[start..<end].map(\.message)[...], room: rest[start].room)
                    start = end
                }
                output.flush()
                lastWrite = MonotonicClock.nanoseconds()
            }
        }
    }

    /// Writes a batch of one room's events, which this subscriber has not had.
    private func write(_ batch: ArraySlice<StoredMessage>, room index: Int) {
        if let framing {
            framing.value.write(batch, room: index, to: output)
        } else {
            output.write(batch)
        }
    }

    /// Offers a batch of the events of its room `index`, in id order, on the event loop: writes
    /// those it has not had and flushes once. Returns how many it took (written, or queued while
    /// not live), or nil when the subscriber is too slow: it must then be dropped and its
    /// connection closed.
    func offer(_ events: [StoredMessage], room index: Int, now: UInt64) -> Int? {
        output.eventLoop.assertInEventLoop()
        // Ended while its fan-out was between turns of a batch.
        if ended { return 0 }
        if events[0].kind != .message { return offer(signal: events[0], now: now) }
        guard live else {
            var queued = 0
            for message in events {
                if let floor = places[index].floor, message.id <= floor { continue }
                places[index].floor = message.id
                guard pending.count < capacity else { return nil }
                pending.append(Pending(room: index, message: message))
                queued += 1
            }
            return queued
        }
        // Ids rise within a room's batch, so what this subscriber has not had is a suffix of it,
        // except where a gap fill's messages meet the live ones held while it ran: then only
        // those above the running floor are written. By index, reading only the ids: iterating
        // would copy (retain and release) every field of every event for every subscriber.
        var start = events.startIndex
        if let floor = places[index].floor {
            while start < events.endIndex, events[start].id <= floor { start += 1 }
        }
        guard start < events.endIndex else { return 0 }
        var rising = true
        var next = start + 1
        while next < events.endIndex {
            if events[next].id <= events[next - 1].id {
                rising = false
                break
            }
            next += 1
        }
        let batch: ArraySlice<StoredMessage> = rising ? events[start...] : Self.aboveRunningFloor(events[start...])
        let taken = batch.count
        guard mayWrite(taken) else { return nil }
        places[index].floor = batch[batch.endIndex - 1].id
        write(batch, room: index)
        output.flush()
        lastWrite = now
        return taken
    }

    /// Counts `events` about to be written while the connection is above its high-water mark;
    /// false when that makes more than `capacity` since it last was below: the subscriber is too
    /// slow.
    private func mayWrite(_ events: Int) -> Bool {
        if output.isWritable {
            unwritableWrites = 0
            // It took what it was sent: stalled heartbeats count from zero again.
            stalledHeartbeats = 0
            return true
        }
        unwritableWrites += events
        return unwritableWrites <= capacity
    }

    /// Writes a signal (typing, presence) if the stream is live, and presence only if it asked
    /// for it: never queued, never replayed.
    private func offer(signal: StoredMessage, now: UInt64) -> Int? {
        guard live, signal.kind != .presence || wantsPresence else { return 0 }
        guard mayWrite(1) else { return nil }
        output.write(signal.chunk)
        output.flush()
        lastWrite = now
        return 1
    }

    /// The events of `events` above every id before them: each message once, in id order.
    private static func aboveRunningFloor(_ events: ArraySlice<StoredMessage>) -> ArraySlice<StoredMessage> {
        var kept: [StoredMessage] = []
        for message in events where kept.last.map({ message.id > $0.id }) ?? true {
            kept.append(message)
        }
        return kept[...]
    }

    /// Writes a heartbeat if nothing was written since `idleSince`, on the event loop. Returns
    /// false when the stream is stalled: `stalledHeartbeatLimit` heartbeats in a row found its
    /// connection above its high-water mark, with nothing else written in between. Its client
    /// stopped reading (or reads too slowly to take even its opening), and the node would hold
    /// what it was sent for as long as it stays connected: the fan-out closes it as slow, and the
    /// client resumes from what it got.
    func heartbeatIfIdle(since idleSince: UInt64, now: UInt64) -> Bool {
        output.eventLoop.assertInEventLoop()
        guard live, !ended, lastWrite <= idleSince else { return true }
        // Counted once a round: a stream of several rooms is met once per room.
        lastWrite = now
        stalledHeartbeats = output.isWritable ? 0 : stalledHeartbeats + 1
        guard stalledHeartbeats < Self.stalledHeartbeatLimit else { return false }
        output.write(SSE.heartbeatChunk)
        output.flush()
        return true
    }

    /// Heartbeats in a row that may find a stream's connection above its high-water mark before
    /// it is closed as slow: about a minute at the default `--heartbeat` of 15 s.
    static let stalledHeartbeatLimit: UInt8 = 4

    /// Ends the stream, from any thread: a drain's `retry:` is written last, a slow subscriber's
    /// connection is closed, and `closed()` returns. Only the first reason counts.
    public func close(_ reason: CloseReason) {
        guard claim(reason) else { return }
        output.eventLoop.execute { [self] in
            finishOnLoop(reason)
        }
    }

    /// Closes a subscriber found too slow by the fan-out, on the event loop. Returns false if it
    /// was already being closed for another reason.
    func closeAsSlowOnLoop() -> Bool {
        output.eventLoop.assertInEventLoop()
        let first = claim(.slow)
        finishOnLoop(.slow)
        return first
    }

    /// Records `reason` as why the stream ends, unless one was recorded before; true if it was first.
    private func claim(_ reason: CloseReason) -> Bool {
        ending.withLock { ending in
            guard ending.reason == nil else { return false }
            ending.reason = reason
            return true
        }
    }

    /// The end of the stream on the event loop: leaves the fan-out, writes the last bytes, wakes
    /// the waiting handler.
    func finishOnLoop(_ reason: CloseReason) {
        output.eventLoop.assertInEventLoop()
        if !ended {
            ended = true
            fanout.remove(self)
            pending = []
            framing = nil
            switch reason {
            case .draining(let retry):
                output.write(SSE.chunk(SSE.retry(milliseconds: retry)))
                output.flush()
                output.endResponse()
            case .slow:
                output.close()
            case .finished:
                output.endResponse()
            case .tokenExpired:
                output.write(SSE.chunk(SSE.tokenExpired))
                output.flush()
                output.endResponse()
            }
        }
        let (waiter, done) = ending.withLock { ending in
            let done = ending.reason ?? reason
            ending.reason = done
            ending.done = done
            return (ending.waiter.take(), done)
        }
        waiter?.resume(returning: done)
    }

    /// Waits until the stream ends and returns why. Cancelling the waiting task ends the stream.
    public func closed() async -> CloseReason {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<CloseReason, Never>) in
                let done: CloseReason? = ending.withLock { ending in
                    if let done = ending.done { return done }
                    ending.waiter = continuation
                    return nil
                }
                if let done { continuation.resume(returning: done) }
            }
        } onCancel: {
            close(.finished)
        }
    }

    /// The reason the stream was closed, if it was.
    public var closeReason: CloseReason? { ending.withLock { $0.reason } }
}

import NIOCore

/// The `id:` lines of a stream of several rooms: each event's id is the stream's position after
/// it (``StreamPosition``), so a client that reconnects with it resumes every room where it was.
///
/// The rest of each event's frame is the message's shared bytes (`event: message`, `data:`), so
/// what a stream of several rooms writes of its own is the id line alone.
public struct MultiRoomFraming: Sendable {
    /// The stream's rooms, in its order.
    public let rooms: [RoomName]
    private let check: UInt32
    /// Where the stream stands: the last id written in each room.
    public private(set) var position: StreamPosition
    /// Scratch space for the binary form and its text, reused from event to event.
    private var binary: [UInt8] = []
    private var text: [UInt8] = []
    /// The chunk headers and id lines of a batch of live events.
    private var heads = ByteBuffer()

    /// A stream of `rooms` that has had everything up to `start` (one id per room).
    public init(rooms: [RoomName], start: [MessageID]) {
        precondition(rooms.count == start.count, "one position per room")
        self.rooms = rooms
        self.check = StreamPosition.check(rooms)
        self.position = StreamPosition(ids: start)
    }

    /// Moves room `index` to `id` and puts the `id:` line that says so, `id: ~…\n`, in `text`.
    private mutating func advance(room index: Int, to id: MessageID) {
        position.ids[index] = id
        text.removeAll(keepingCapacity: true)
        text.append(contentsOf: "id: ".utf8)
        position.appendText(to: &text, check: check, binary: &binary)
        text.append(UInt8(ascii: "\n"))
    }

    /// Writes `message` (of room `index`) as an SSE frame with the stream's position as its id.
    public mutating func writeFrame(of message: StoredMessage, room index: Int, into buffer: inout ByteBuffer) {
        advance(room: index, to: message.id)
        buffer.writeBytes(text)
        buffer.writeImmutableBuffer(message.frameAfterIDLine)
    }

    /// Writes `events` (of room `index`, in order) to `output` as HTTP/1.1 chunks: per event, its
    /// chunk header and id line, then the shared rest of its chunk; one write call.
    mutating func write(_ events: ArraySlice<StoredMessage>, room index: Int, to output: any StreamOutput) {
        // The heads first, all in `heads`, and only then the slices of it: a slice taken
        // between writes would make the next write copy the storage.
        heads.clear()
        var spans: [(start: Int, length: Int)] = []
        spans.reserveCapacity(events.count)
        for message in events {
            advance(room: index, to: message.id)
            let start = heads.writerIndex
            let length = text.count + message.frame.readableBytes - message.idLineLength
            heads.writeString(String(length, radix: 16))
            heads.writeStaticString("\r\n")
            heads.writeBytes(text)
            spans.append((start, heads.writerIndex - start))
        }
        var chunks: [ByteBuffer] = []
        chunks.reserveCapacity(2 * events.count)
        for (span, message) in zip(spans, events) {
            chunks.append(heads.getSlice(at: span.start, length: span.length)!)
            chunks.append(message.chunkAfterIDLine)
        }
        output.write(chunks: chunks)
    }
}

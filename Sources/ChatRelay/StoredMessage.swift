import NIOCore

/// A message as it travels through the relay after its broker stored it: encoded once, shared by all.
///
/// `frame` is the complete SSE event (`id:`, `event: message`, one `data:` line, blank line);
/// `chunk` is the same frame in HTTP/1.1 chunked transfer coding, which the hub writes, byte for
/// byte, to every subscriber of the room; `json` is the `data` payload, used by the history
/// endpoint and the POST response. All three are slices of one storage.
public struct StoredMessage: Sendable {
    /// What the event is: a stored message, or a signal that is relayed live and never stored.
    public enum Kind: UInt8, Sendable {
        /// A chat message: stored, with an id, replayed on resume.
        case message
        /// `event: typing`: someone is typing in the room.
        case typing
        /// `event: presence`: who came and went (only to streams that asked for it).
        case presence

        /// The SSE event type and the word that marks it on the Redis channel.
        public var name: String {
            switch self {
            case .message: "message"
            case .typing: "typing"
            case .presence: "presence"
            }
        }
    }

    public let kind: Kind
    /// The message's id; `.zero` for a signal (which has none: no `id:` line, so a client's
    /// `Last-Event-ID` stays where its last message put it).
    public let id: MessageID
    public let room: RoomName
    public let json: ByteBuffer
    public let frame: ByteBuffer
    public let chunk: ByteBuffer
    /// The length of the frame's first line, `id: <id>\n`: a stream of several rooms writes its
    /// own `id:` line and the rest of the shared frame after it.
    let idLineLength: Int

    /// Builds the frame around JSON that already holds the message (for example one received from
    /// Redis pub/sub), without decoding or re-encoding it. The JSON must be one line.
    public init(id: MessageID, room: RoomName, json: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        let idText = id.description
        var buffer = SSE.bufferForChunk(capacity: json.readableBytes + 2 * idText.utf8.count + 42, allocator: allocator)
        SSE.writeMessageFrame(id: idText, json: json.readableBytesView, into: &buffer)
        self.init(id: id, room: room, framed: buffer, idLength: idText.utf8.count, jsonLength: json.readableBytes)
    }

    /// The message whose JSON is `jsonBytes`, framed (as history keeps it: `HistoryRing`).
    init(id: MessageID, room: RoomName, jsonBytes: [UInt8], allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        let idText = id.description
        var buffer = SSE.bufferForChunk(capacity: jsonBytes.count + 28 + idText.utf8.count, allocator: allocator)
        SSE.writeMessageFrame(id: idText, json: jsonBytes, into: &buffer)
        self.init(id: id, room: room, framed: buffer, idLength: idText.utf8.count, jsonLength: jsonBytes.count)
    }

    /// Encodes `message` once: the JSON inside its SSE frame.
    public init(_ message: Message, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        let idText = message.id.description
        // The frame: "id: <id>\nevent: message\ndata: " (26 bytes and the id), the JSON, "\n\n".
        let jsonLength = Message.jsonLength(id: message.id, room: message.room, user: message.user, name: message.name, text: message.text)
        var buffer = SSE.bufferForChunk(capacity: 28 + message.id.description.utf8.count + jsonLength, allocator: allocator)
        let written = SSE.writeMessageFrame(id: idText, into: &buffer) { message.writeJSON(into: &$0) }
        self.init(id: message.id, room: message.room, framed: buffer, idLength: idText.utf8.count, jsonLength: written)
    }

    /// `buffer` holds the frame from its reader index, with `SSE.chunkHeaderSpace` free bytes before it.
    private init(id: MessageID, room: RoomName, framed buffer: ByteBuffer, idLength: Int, jsonLength: Int) {
        var buffer = buffer
        let frameStart = buffer.readerIndex
        let frameLength = buffer.readableBytes
        // Framed first, sliced after: a slice taken before would make the framing copy the storage.
        SSE.frameAsChunk(&buffer)
        let frame = buffer.getSlice(at: frameStart, length: frameLength)!
        self.kind = .message
        self.id = id
        self.room = room
        self.frame = frame
        self.chunk = buffer
        // "id: " + the id + "\n".
        self.idLineLength = 5 + idLength
        // The frame is "id: <id>\nevent: message\ndata: <json>\n\n": the JSON ends two bytes before the end.
        self.json = frame.getSlice(at: frameLength - 2 - jsonLength, length: jsonLength)!
    }

    /// A signal (typing, presence) of `room` carrying `json` (one line): `event: <kind>` and
    /// `data:`, no `id:`.
    public init(signal kind: Kind, room: RoomName, json: ByteBuffer) {
        precondition(kind != .message, "a message has an id")
        var buffer = SSE.bufferForChunk(capacity: json.readableBytes + 28)
        buffer.writeStaticString("event: ")
        buffer.writeString(kind.name)
        buffer.writeStaticString("\ndata: ")
        let jsonStart = buffer.writerIndex - buffer.readerIndex
        buffer.writeImmutableBuffer(json)
        buffer.writeStaticString("\n\n")
        let frameStart = buffer.readerIndex
        let frameLength = buffer.readableBytes
        SSE.frameAsChunk(&buffer)
        let frame = buffer.getSlice(at: frameStart, length: frameLength)!
        self.kind = kind
        self.id = .zero
        self.room = room
        self.frame = frame
        self.chunk = buffer
        self.idLineLength = 0
        self.json = frame.getSlice(at: jsonStart, length: json.readableBytes)!
    }

    /// The frame after its `id:` line (`event: message`, `data:`, blank line): what a stream of
    /// several rooms writes after an `id:` line of its own.
    public var frameAfterIDLine: ByteBuffer {
        frame.getSlice(at: frame.readerIndex + idLineLength, length: frame.readableBytes - idLineLength)!
    }

    /// The chunk's bytes from the frame's second line on, the chunk's closing CR LF included.
    var chunkAfterIDLine: ByteBuffer {
        let offset = chunk.readableBytes - 2 - frame.readableBytes + idLineLength
        return chunk.getSlice(at: chunk.readerIndex + offset, length: chunk.readableBytes - offset)!
    }
}

import NIOCore

/// A message as it travels through the relay after its broker stored it: encoded once, shared by all.
///
/// `frame` is the complete SSE event (`id:`, `event: message`, one `data:` line, blank line) that the
/// hub writes, byte for byte, to every subscriber of the room; `json` is the `data` payload, a slice
/// of the same storage, used by the history endpoint and the POST response.
public struct StoredMessage: Sendable {
    public let id: MessageID
    public let room: RoomName
    public let json: ByteBuffer
    public let frame: ByteBuffer

    /// Builds the frame around JSON that already holds the message (for example one received from
    /// Redis pub/sub), without decoding or re-encoding it. The JSON must be one line.
    public init(id: MessageID, room: RoomName, json: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        let idText = id.description
        var frame = allocator.buffer(capacity: json.readableBytes + 2 * idText.utf8.count + 40)
        SSE.writeMessageFrame(id: idText, json: json.readableBytesView, into: &frame)
        self.init(id: id, room: room, frame: frame, jsonLength: json.readableBytes)
    }

    /// Encodes `message` once: the JSON inside its SSE frame.
    public init(_ message: Message, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        let idText = message.id.description
        var frame = allocator.buffer(capacity: 140 + message.user.utf8.count + message.text.utf8.count * 2)
        frame.writeStaticString("id: ")
        frame.writeString(idText)
        frame.writeStaticString("\nevent: message\ndata: ")
        let jsonStart = frame.writerIndex
        message.writeJSON(into: &frame)
        let jsonLength = frame.writerIndex - jsonStart
        frame.writeStaticString("\n\n")
        self.id = message.id
        self.room = message.room
        self.frame = frame
        self.json = frame.getSlice(at: jsonStart, length: jsonLength)!
    }

    private init(id: MessageID, room: RoomName, frame: ByteBuffer, jsonLength: Int) {
        self.id = id
        self.room = room
        self.frame = frame
        // The frame is "id: <id>\nevent: message\ndata: <json>\n\n": the JSON ends two bytes before the end.
        self.json = frame.getSlice(at: frame.writerIndex - 2 - jsonLength, length: jsonLength)!
    }
}

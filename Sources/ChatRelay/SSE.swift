import NIOCore

/// Server-Sent Events framing for the relay's streams.
///
/// Every payload is one line (message JSON is escaped so), so a frame never needs more than one
/// `data:` field and no user input can start a new field or event.
public enum SSE {
    /// A heartbeat comment, written to idle streams so proxies keep them open.
    public static let heartbeat = ByteBuffer(staticString: ": heartbeat\n\n")

    /// `heartbeat` as an HTTP/1.1 chunk, for writing below the HTTP encoder.
    public static let heartbeatChunk = chunk(heartbeat)

    /// Bytes kept free before a frame for its chunk header: up to 8 hex digits (any length a
    /// ByteBuffer holds, so no frame from Redis is too long for it) and CR LF.
    static let chunkHeaderSpace = 10

    /// `bytes` in HTTP/1.1 chunked transfer coding: `<hex length>\r\n<bytes>\r\n`.
    ///
    /// Every stream is a response of unknown length, so the HTTP encoder sends its body chunked.
    /// The hub writes events below that encoder, framed once per event instead of once per
    /// subscriber.
    public static func chunk(_ bytes: ByteBuffer) -> ByteBuffer {
        var buffer = bufferForChunk(capacity: bytes.readableBytes)
        buffer.writeImmutableBuffer(bytes)
        frameAsChunk(&buffer)
        return buffer
    }

    /// An empty buffer for `capacity` bytes of payload, with room before it for the chunk header
    /// and after it for the CR LF that `frameAsChunk` adds.
    static func bufferForChunk(capacity: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: chunkHeaderSpace + capacity + 2)
        buffer.moveWriterIndex(to: chunkHeaderSpace)
        buffer.moveReaderIndex(to: chunkHeaderSpace)
        return buffer
    }

    /// Turns the readable bytes of `buffer` into a chunk in place: writes the header into the
    /// `chunkHeaderSpace` bytes before them and CR LF after them.
    static func frameAsChunk(_ buffer: inout ByteBuffer) {
        let length = buffer.readableBytes
        // Every caller frames a non-empty frame in a buffer from `bufferForChunk`; a ByteBuffer's
        // length fits 8 hex digits.
        precondition(length > 0 && buffer.readerIndex >= chunkHeaderSpace, "a chunk needs a byte and room for its header")
        var digits = 1
        while length >> (4 * digits) > 0 { digits += 1 }
        let start = buffer.readerIndex - digits - 2
        for index in 0..<digits {
            let nibble = (length >> (4 * (digits - 1 - index))) & 0xF
            buffer.setInteger(hexDigits[nibble], at: start + index)
        }
        buffer.setInteger(UInt8(ascii: "\r"), at: start + digits)
        buffer.setInteger(UInt8(ascii: "\n"), at: start + digits + 1)
        buffer.moveReaderIndex(to: start)
        buffer.writeStaticString("\r\n")
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// The opening of every stream: the reconnection delay and a comment naming the node.
    public static func preamble(retryMilliseconds: Int, node: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString("retry: \(retryMilliseconds)\n: chat-relay node \(singleLine(node))\n\n")
        return buffer
    }

    /// A `retry:` field alone: sent last on a stream the node ends while draining, so each client
    /// waits its own random delay before it reconnects.
    public static func retry(milliseconds: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString("retry: \(milliseconds)\n\n")
        return buffer
    }

    /// `event: token-expired`: sent last on a stream whose token expired, so the page knows to get
    /// a fresh token (or ticket) and reconnect with `Last-Event-ID` rather than retry as it is.
    public static let tokenExpired: ByteBuffer = {
        var buffer = ByteBuffer()
        buffer.writeString(
            "event: token-expired\ndata: {\"error\":\"token_expired\",\"message\":\"The stream's token expired: "
                + "reconnect with a fresh token (or ticket) and Last-Event-ID.\"}\n\n")
        return buffer
    }()

    /// `event: reset` with `data: {"oldest":"<id>"}`: the requested id is older than what the room
    /// retains. On a stream of several rooms the data names the room first: `{"room":"<room>",…}`.
    public static func reset(oldest: MessageID?, room: RoomName? = nil) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeStaticString("event: reset\ndata: {")
        if let room { buffer.writeString("\"room\":\"\(room)\",") }
        if let oldest {
            buffer.writeString("\"oldest\":\"\(oldest)\"}\n\n")
        } else {
            buffer.writeStaticString("\"oldest\":null}\n\n")
        }
        return buffer
    }

    /// Writes `id: <id>\nevent: message\ndata: <json>\n\n`.
    public static func writeMessageFrame(id: String, json: some Collection<UInt8>, into buffer: inout ByteBuffer) {
        writeMessageFrame(id: id, into: &buffer) { $0.writeBytes(json) }
    }

    /// Writes `id: <id>\nevent: message\ndata: `, then the JSON `writeJSON` writes, then `\n\n`;
    /// returns the JSON's length.
    @discardableResult
    static func writeMessageFrame(id: String, into buffer: inout ByteBuffer, json writeJSON: (inout ByteBuffer) -> Void) -> Int {
        buffer.writeStaticString("id: ")
        buffer.writeString(id)
        buffer.writeStaticString("\nevent: message\ndata: ")
        let jsonStart = buffer.writerIndex
        writeJSON(&buffer)
        let jsonLength = buffer.writerIndex - jsonStart
        buffer.writeStaticString("\n\n")
        return jsonLength
    }

    private static func singleLine(_ text: String) -> String {
        String(text.unicodeScalars.filter { $0 != "\n" && $0 != "\r" })
    }
}

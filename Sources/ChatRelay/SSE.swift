import NIOCore

/// Server-Sent Events framing for the relay's streams.
///
/// Every payload is one line (message JSON is escaped so), so a frame never needs more than one
/// `data:` field and no user input can start a new field or event.
public enum SSE {
    /// A heartbeat comment, written to idle streams so proxies keep them open.
    public static let heartbeat = ByteBuffer(staticString: ": heartbeat\n\n")

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

    /// `event: reset` with `data: {"oldest":"<id>"}`: the requested id is older than what the room retains.
    public static func reset(oldest: MessageID?) -> ByteBuffer {
        var buffer = ByteBuffer()
        if let oldest {
            buffer.writeString("event: reset\ndata: {\"oldest\":\"\(oldest)\"}\n\n")
        } else {
            buffer.writeString("event: reset\ndata: {\"oldest\":null}\n\n")
        }
        return buffer
    }

    /// Writes `id: <id>\nevent: message\ndata: <json>\n\n`.
    public static func writeMessageFrame(id: String, json: some Collection<UInt8>, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("id: ")
        buffer.writeString(id)
        buffer.writeStaticString("\nevent: message\ndata: ")
        buffer.writeBytes(json)
        buffer.writeStaticString("\n\n")
    }

    private static func singleLine(_ text: String) -> String {
        String(text.unicodeScalars.filter { $0 != "\n" && $0 != "\r" })
    }
}

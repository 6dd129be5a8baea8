import ChatRelay
import NIOCore
import NIOHTTP1

/// A whole answer to a request before it is written: its status, content type, body and own
/// headers. The headers every answer carries are added by `RelayNode.responseHead(for:origin:closing:)`.
struct Answer: Sendable {
    var status: HTTPResponseStatus
    var contentType: String?
    var body: ByteBuffer
    var headers: [(String, String)] = []

    init(status: HTTPResponseStatus, contentType: String?, body: ByteBuffer, headers: [(String, String)] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    /// `error`'s answer: its status, its JSON body, `Retry-After` or `Allow` if it has them.
    init(_ error: APIError) {
        self.init(status: error.status, contentType: APIError.contentType, body: error.body, headers: error.extraHeaders)
    }

    static let jsonType = "application/json; charset=utf-8"
}

extension RelayNode {
    /// The head of `answer`, with the headers every answer of the node carries: `Content-Type`,
    /// `Content-Length`, `X-Relay-Node`, CORS for `origin` (with `--allow-origin`), `Date`, and
    /// `Connection: close` when `closing`. The one place an answer's head is made, whatever the
    /// request.
    func responseHead(for answer: Answer, origin: String?, closing: Bool) -> HTTPResponseHead {
        var headers = HTTPHeaders()
        if let contentType = answer.contentType { headers.add(name: "Content-Type", value: contentType) }
        for (name, value) in answer.headers { headers.add(name: name, value: value) }
        // A 204 has no body, and says nothing of one.
        if answer.status != .noContent { headers.add(name: "Content-Length", value: String(answer.body.readableBytes)) }
        addCommonHeaders(to: &headers, origin: origin)
        if closing { headers.add(name: "Connection", value: "close") }
        return HTTPResponseHead(version: .http1_1, status: answer.status, headers: headers)
    }

    /// The head of a stream's `200`, as bytes for its socket (the HTTP encoder has left the
    /// connection): `streamHeaders`, the common headers, chunked, and `Connection: close` (the
    /// connection ends with the stream: a client must not put it back in its pool).
    func streamHead(origin: String?) -> ByteBuffer {
        var headers = HTTPHeaders()
        for (name, value) in Self.streamHeaders { headers.add(name: name, value: value) }
        addCommonHeaders(to: &headers, origin: origin)
        headers.add(name: "Connection", value: "close")
        headers.add(name: "Transfer-Encoding", value: "chunked")
        var head = ByteBuffer()
        head.reserveCapacity(320)
        head.writeStaticString("HTTP/1.1 200 OK\r\n")
        for header in headers {
            head.writeString(header.name)
            head.writeStaticString(": ")
            head.writeString(header.value)
            head.writeStaticString("\r\n")
        }
        head.writeStaticString("\r\n")
        return head
    }

    /// `X-Relay-Node`, `X-Content-Type-Options: nosniff` (no answer is to be read as another type
    /// than it says), CORS for `origin` with `Vary: Origin` whatever the origin, `Date`.
    private func addCommonHeaders(to headers: inout HTTPHeaders, origin: String?) {
        headers.add(name: "X-Relay-Node", value: configuration.nodeID)
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        if let cors {
            if let origin {
                for (name, value) in cors.responseHeaders(origin: origin) { headers.add(name: name, value: value) }
            }
            headers.add(name: "Vary", value: "Origin")
        }
        headers.add(name: "Date", value: HTTPDate.now())
    }

    /// The headers of every stream's `200` besides the common ones and the framing.
    static let streamHeaders = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")]
}

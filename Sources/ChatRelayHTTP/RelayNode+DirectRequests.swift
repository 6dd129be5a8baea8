import ChatRelay
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTP1

/// A stream request a connection's `DirectRequestHandler` opens itself, below Hummingbird.
struct DirectStreamRequest: Sendable {
    let room: RoomName
    let lastEventID: MessageID?
    /// The request's `Origin`, for the CORS headers.
    let origin: String?
}

extension RelayNode {
    /// The stream `head` asks for, if this node can open it below the router: a `GET` of a stream
    /// path over HTTP/1.1, without a body, with a valid room and `Last-Event-ID`, while the node is
    /// not draining. Anything else, errors included, is left to the router, which answers it.
    func directStreamRequest(_ head: HTTPRequestHead) -> DirectStreamRequest? {
        guard head.method == .GET, head.version == .http1_1 else { return nil }
        let headers = head.headers
        if headers.contains(name: "transfer-encoding") || headers.contains(name: "expect") { return nil }
        if let length = headers.first(name: "content-length"), length != "0" { return nil }
        let uri = URI(head.uri)
        guard let room = Self.room(in: uri.path, endpoint: "events") else { return nil }
        let lastEventID: MessageID?
        do {
            lastEventID = try Self.lastEventID(
                header: headers.first(name: "last-event-id"), query: uri.queryParameters.get("lastEventId"))
        } catch {
            return nil
        }
        guard !hub.isDraining else { return nil }
        return DirectStreamRequest(room: room, lastEventID: lastEventID, origin: headers.first(name: "origin"))
    }

    /// The head of a stream's `200` opened below the router: the headers the router's streams
    /// carry (`streamHeaders`, `X-Relay-Node`, CORS, `Date`), chunked, and `Connection: close`.
    func directStreamHead(origin: String?) -> ByteBuffer {
        var head = ByteBuffer()
        head.reserveCapacity(320)
        head.writeStaticString("HTTP/1.1 200 OK\r\n")
        func writeField(_ name: String, _ value: String) {
            head.writeString(name)
            head.writeStaticString(": ")
            head.writeString(value)
            head.writeStaticString("\r\n")
        }
        for field in Self.streamHeaders {
            writeField(field.name.rawName, field.value)
        }
        writeField("X-Relay-Node", configuration.nodeID)
        if let origin, let cors {
            for field in cors.responseHeaders(origin: origin) {
                writeField(field.name.rawName, field.value)
            }
        }
        writeField("Date", HTTPDate.now())
        // The connection ends with the stream (a drain closes it after the last chunk): a client
        // must not put it back in its pool for another request.
        head.writeStaticString("Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
        return head
    }
}

extension RelayNode {
    /// The head of an answer written below the router, with the headers the router's answers
    /// carry: `Content-Type`, `Content-Length`, `X-Relay-Node`, CORS for `origin`, `Date`, and
    /// `Connection: close` when `closing`; `extra` adds the answer's own.
    func responseHead(
        status: HTTPResponseStatus, contentType: String, contentLength: Int, origin: String?, closing: Bool,
        extra: (inout HTTPHeaders) -> Void = { _ in }
    ) -> HTTPResponseHead {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        extra(&headers)
        headers.add(name: "Content-Length", value: String(contentLength))
        headers.add(name: "X-Relay-Node", value: configuration.nodeID)
        if let origin, let cors {
            for field in cors.responseHeaders(origin: origin) {
                headers.add(name: field.name.rawName, value: field.value)
            }
        }
        headers.add(name: "Date", value: HTTPDate.now())
        if closing { headers.add(name: "Connection", value: "close") }
        return HTTPResponseHead(version: .http1_1, status: status, headers: headers)
    }

    /// `error` as an answer written below the router: its head (with `Retry-After` or `Allow` if
    /// it has them) and its JSON body.
    func errorResponse(_ error: APIError, origin: String?, closing: Bool) -> (HTTPResponseHead, ByteBuffer) {
        let body = error.body
        let head = responseHead(
            status: HTTPResponseStatus(statusCode: Int(error.status.code), reasonPhrase: error.status.reasonPhrase),
            contentType: APIError.contentType, contentLength: body.readableBytes, origin: origin, closing: closing
        ) { headers in
            for (name, value) in error.extraHeaders { headers.add(name: name, value: value) }
        }
        return (head, body)
    }
}

/// A message POST a connection's `DirectRequestHandler` serves itself, below Hummingbird.
struct DirectPublishRequest: Sendable {
    let fields: PublishRequest
    /// The declared body length (at most the node's body limit).
    let contentLength: Int
    /// The request's `Origin`, for the CORS headers.
    let origin: String?
    /// The client asked to close the connection after the answer.
    let closeAfter: Bool
}

extension RelayNode {
    /// The message POST `head` is, if this node can serve it below the router: a `POST` of a
    /// message path over HTTP/1.1 with a valid room and a `Content-Length` within the body limit.
    /// Anything else (a chunked or oversized body, `Expect`, an upgrade, a bad room) is left to
    /// the router, which answers it.
    func directPublishRequest(_ head: HTTPRequestHead, remoteAddress: SocketAddress?) -> DirectPublishRequest? {
        guard head.method == .POST, head.version == .http1_1 else { return nil }
        let headers = head.headers
        guard !headers.contains(name: "transfer-encoding"), !headers.contains(name: "expect"), !headers.contains(name: "upgrade"),
            let length = headers.first(name: "content-length").flatMap(Int.init), (0...configuration.maxBodyBytes).contains(length)
        else { return nil }
        guard let room = Self.room(in: URI(head.uri).path, endpoint: "messages") else { return nil }
        let fields = PublishRequest(
            room: room,
            contentType: headers.first(name: "content-type"),
            contentLength: length,
            idempotencyKey: headers.first(name: "idempotency-key"),
            clientKey: clientKey(forwardedFor: headers["x-forwarded-for"], address: remoteAddress))
        let closeAfter = headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
        return DirectPublishRequest(fields: fields, contentLength: length, origin: headers.first(name: "origin"), closeAfter: closeAfter)
    }
}

extension RelayNode {
    /// The methods the node's routes take on `path` (for `Allow`), or nil for a path it does not
    /// serve at all: a known path asked with another method is `405`, an unknown one `404`.
    static func allowedMethods(onPath path: String) -> String? {
        switch path {
        case "/", "/health", "/health/live", "/health/ready", "/metrics", "/events": return "GET"
        case "/messages": return "POST"
        default: break
        }
        guard path.hasPrefix("/rooms/") else { return nil }
        let rest = path.dropFirst("/rooms/".count).split(separator: "/", omittingEmptySubsequences: false)
        guard rest.count == 2, !rest[0].isEmpty else { return nil }
        switch rest[1] {
        case "messages": return "GET, POST"
        case "events": return "GET"
        default: return nil
        }
    }

    /// The room a path of `endpoint` names, as the router's routes match them: `/<endpoint>` is
    /// the lobby, `/rooms/<room>/<endpoint>` a room with a valid name; anything else is nil.
    static func room(in path: String, endpoint: String) -> RoomName? {
        if path.utf8.count == endpoint.utf8.count + 1, path.hasPrefix("/"), path.hasSuffix(endpoint) {
            return .lobby
        }
        let suffix = "/" + endpoint
        guard path.hasPrefix("/rooms/"), path.hasSuffix(suffix), path.utf8.count > 7 + suffix.utf8.count else { return nil }
        return RoomName(path.dropFirst(7).dropLast(suffix.count))
    }
}

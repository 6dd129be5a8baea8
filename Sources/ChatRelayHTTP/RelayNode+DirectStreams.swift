import ChatRelay
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTP1

/// A stream request a connection's `StreamConnectionHandler` opens itself, below Hummingbird.
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
        let path = uri.path
        let room: RoomName
        if path == "/events" {
            room = .lobby
        } else if path.hasPrefix("/rooms/"), path.hasSuffix("/events"), path.utf8.count > 14,
                  let named = RoomName(path.dropFirst(7).dropLast(7)) {
            room = named
        } else {
            return nil
        }
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

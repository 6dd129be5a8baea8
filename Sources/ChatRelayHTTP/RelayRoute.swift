import ChatRelay
import NIOHTTP1
import RedisClient

/// A file of the page other than the page itself.
enum PageAsset: Equatable, Sendable {
    case script
    case style
}

/// What a request asks the node for: the one route table of the HTTP API (docs/API.md), for
/// every request whatever its position on its connection.
enum RelayRoute: Equatable, Sendable {
    case publish(RoomName)
    /// `POST /rooms/{room}/typing`: relayed live to the room's streams, never stored.
    case typing(RoomName)
    case stream(RoomName)
    /// `GET /events`: one stream of the rooms its `room` parameters name (`lobby` when none).
    case roomsStream
    case history(RoomName)
    /// `GET /rooms/{room}/presence`: who is in the room.
    case presence(RoomName)
    case live
    case ready
    case metrics
    case page
    /// `GET /app.js`, `GET /app.css`: the page's script and style.
    case pageAsset(PageAsset)
    /// `POST /auth/tickets`: a stream ticket for the caller's token.
    case ticket
    /// `POST /auth/session`: the session cookie set to the caller's token.
    case startSession
    /// `DELETE /auth/session`: the session cookie cleared.
    case endSession
    /// `OPTIONS` of a known path: its `Allow`, and a CORS preflight's answer.
    case options(allow: String)

    /// Whether the request opens a stream (where a ticket may stand for a token).
    var opensStream: Bool {
        switch self {
        case .stream, .roomsStream: true
        default: false
        }
    }

    /// Whether who asks matters (`--auth jwt`): reading or posting in a room, and `/auth/…`.
    /// Health, metrics, the page and preflights are answered without reading credentials.
    var takesCredentials: Bool {
        switch self {
        case .publish, .typing, .stream, .roomsStream, .history, .presence, .ticket, .startSession, .endSession: true
        case .live, .ready, .metrics, .page, .pageAsset, .options: false
        }
    }

    /// Whether the request costs the node reads or work a client could repeat to wear it down
    /// (a stream's registration and replay, history, presence, a ticket kept by the broker, a
    /// token verified for a cookie): each takes from the client's request bucket
    /// (`--request-rate-limit`). POSTs of messages and typing have the POST rate limit.
    var costsReads: Bool {
        switch self {
        case .stream, .roomsStream, .history, .presence, .ticket, .startSession: true
        case .publish, .typing, .live, .ready, .metrics, .page, .pageAsset, .options, .endSession: false
        }
    }

    /// Whether the node reads its request's body (the others' bodies are read and dropped).
    var takesBody: Bool { postsTo != nil }

    /// Whether the request is a typing signal.
    var postsTypingSignal: Bool {
        if case .typing = self { return true }
        return false
    }

    /// The room a POST with a body goes to (a message or a typing signal): such a POST passes
    /// the same checks before its body is read (`RelayNode.checkPublish`).
    var postsTo: RoomName? {
        switch self {
        case .publish(let room), .typing(let room): room
        default: nil
        }
    }

    /// The route of `method` on `target`'s path, or the error to answer: `404` for a path the node
    /// does not serve, `405` (with `Allow`) for a method the path does not take, `400` for a room
    /// name that breaks the rule. `HEAD` is taken wherever `GET` is but for streams.
    static func match(method: HTTPMethod, path: Substring) -> Result<RelayRoute, APIError> {
        guard let resource = Resource(path: path) else {
            return .failure(APIError(.notFound, code: "not_found", message: "No such path: \(path.prefix(200))."))
        }
        let allowed = resource.methods
        // `Allow` is spelled out only for the answers that carry it.
        if method == .OPTIONS { return .success(.options(allow: Self.allow(allowed))) }
        guard allowed.contains(method) else { return .failure(.methodNotAllowed(method.rawValue, allow: Self.allow(allowed))) }
        switch resource {
        case .page: return .success(.page)
        case .script: return .success(.pageAsset(.script))
        case .style: return .success(.pageAsset(.style))
        case .live: return .success(.live)
        case .ready: return .success(.ready)
        case .metrics: return .success(.metrics)
        case .tickets: return .success(.ticket)
        case .session: return .success(method == .POST ? .startSession : .endSession)
        case .lobbyEvents: return .success(.roomsStream)
        case .lobbyMessages: return .success(.publish(.lobby))
        case .roomEvents(let name), .roomMessages(let name), .roomTyping(let name), .roomPresence(let name):
            guard let room = RoomName(name) else { return .failure(.invalidRoom(String(name))) }
            switch resource {
            case .roomEvents: return .success(.stream(room))
            case .roomTyping: return .success(.typing(room))
            case .roomPresence: return .success(.presence(room))
            default: return .success(method == .POST ? .publish(room) : .history(room))
            }
        }
    }

    private static func allow(_ methods: [HTTPMethod]) -> String {
        methods.map(\.rawValue).joined(separator: ", ")
    }

    /// The paths the node serves.
    private enum Resource {
        case page, script, style, live, ready, metrics, lobbyEvents, lobbyMessages, tickets, session
        case roomEvents(Substring)
        case roomMessages(Substring)
        case roomTyping(Substring)
        case roomPresence(Substring)

        /// Compares bytes, not `String`s: a `switch` on strings compares them as Unicode text
        /// (normalization included), which showed in the profile of every request.
        init?(path: Substring) {
            let bytes = path.utf8
            if let fixed = Self.fixed.first(where: { bytes.elementsEqual($0.path.utf8) }) {
                self = fixed.resource
                return
            }
            let prefix = "/rooms/".utf8
            guard bytes.starts(with: prefix) else { return nil }
            let rest = bytes.dropFirst(prefix.count)
            guard let slash = rest.firstIndex(of: UInt8(ascii: "/")), slash != rest.startIndex else { return nil }
            let name = path[rest.startIndex..<slash]
            let tail = rest[rest.index(after: slash)...]
            if tail.elementsEqual("messages".utf8) {
                self = .roomMessages(name)
            } else if tail.elementsEqual("events".utf8) {
                self = .roomEvents(name)
            } else if tail.elementsEqual("typing".utf8) {
                self = .roomTyping(name)
            } else if tail.elementsEqual("presence".utf8) {
                self = .roomPresence(name)
            } else {
                return nil
            }
        }

        /// The paths without a room.
        private static let fixed: [(path: String, resource: Resource)] = [
            ("/", .page), ("/app.js", .script), ("/app.css", .style), ("/health/live", .live), ("/health/ready", .ready),
            ("/health", .ready), ("/metrics", .metrics),
            ("/events", .lobbyEvents), ("/messages", .lobbyMessages), ("/auth/tickets", .tickets), ("/auth/session", .session),
        ]

        /// `HEAD` wherever `GET` is but for streams: a stream has no end, so no `HEAD` either.
        var methods: [HTTPMethod] {
            switch self {
            case .page, .script, .style, .live, .ready, .metrics, .roomPresence: Self.readable
            case .lobbyEvents, .roomEvents: Self.getOnly
            case .lobbyMessages, .tickets, .roomTyping: Self.postOnly
            case .roomMessages: Self.messages
            case .session: Self.sessionMethods
            }
        }

        // Made once: `methods` is asked for on every request.
        private static let readable: [HTTPMethod] = [.GET, .HEAD]
        private static let getOnly: [HTTPMethod] = [.GET]
        private static let postOnly: [HTTPMethod] = [.POST]
        private static let messages: [HTTPMethod] = [.GET, .HEAD, .POST]
        private static let sessionMethods: [HTTPMethod] = [.POST, .DELETE]
    }
}

/// A request's target, `path?query`: the path as sent, and the query's parameters decoded.
struct RequestTarget {
    let path: Substring
    private let query: Substring?

    init(_ uri: String) {
        if let mark = uri.firstIndex(of: "?") {
            path = uri[..<mark]
            query = uri[uri.index(after: mark)...]
        } else {
            path = uri[...]
            query = nil
        }
    }

    /// The first value of parameter `name` (`+` and `%XX` decoded), if the query has it; a value
    /// whose escapes are broken or whose bytes are not UTF-8 counts as absent.
    func value(of name: String) -> String? {
        var first: String??
        forEachValue(of: name) { value in
            first = value
            return false
        }
        return first ?? nil
    }

    /// Every value of parameter `name`, in order, decoded as `value(of:)` does (nil for one that
    /// does not decode); stops after `limit` of them.
    func values(of name: String, limit: Int) -> [String?] {
        var values: [String?] = []
        forEachValue(of: name) { value in
            values.append(value)
            return values.count < limit
        }
        return values
    }

    /// Calls `body` with each value of parameter `name` until it returns false.
    private func forEachValue(of name: String, _ body: (String?) -> Bool) {
        guard let query else { return }
        for item in query.split(separator: "&", omittingEmptySubsequences: true) {
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = PercentDecoding.bytes(pair[0].utf8, plusAsSpace: true), key.elementsEqual(name.utf8) else { continue }
            let bytes = PercentDecoding.bytes((pair.count > 1 ? pair[1] : Substring()).utf8, plusAsSpace: true)
            guard body(bytes.flatMap { String(validating: $0, as: UTF8.self) }) else { return }
        }
    }
}

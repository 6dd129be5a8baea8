import ChatRelay
import NIOHTTP1
import RedisClient

/// What a request asks the node for: the one route table of the HTTP API (docs/API.md), for
/// every request whatever its position on its connection.
enum RelayRoute: Equatable, Sendable {
    case publish(RoomName)
    case stream(RoomName)
    case history(RoomName)
    case live
    case ready
    case metrics
    case page
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
        if case .stream = self { return true }
        return false
    }

    /// Whether who asks matters (`--auth jwt`): reading or posting in a room, and `/auth/…`.
    /// Health, metrics, the page and preflights are answered without reading credentials.
    var takesCredentials: Bool {
        switch self {
        case .publish, .stream, .history, .ticket, .startSession, .endSession: true
        case .live, .ready, .metrics, .page, .options: false
        }
    }

    /// Whether the node reads its request's body (the others' bodies are read and dropped).
    var takesBody: Bool {
        if case .publish = self { return true }
        return false
    }

    /// The route of `method` on `target`'s path, or the error to answer: `404` for a path the node
    /// does not serve, `405` (with `Allow`) for a method the path does not take, `400` for a room
    /// name that breaks the rule. `HEAD` is taken wherever `GET` is but for streams.
    static func match(method: HTTPMethod, path: Substring) -> Result<RelayRoute, APIError> {
        guard let resource = Resource(path: path) else {
            return .failure(APIError(.notFound, code: "not_found", message: "No such path: \(path.prefix(200))."))
        }
        let allowed = resource.methods
        let allow = allowed.map(\.rawValue).joined(separator: ", ")
        if method == .OPTIONS { return .success(.options(allow: allow)) }
        guard allowed.contains(method) else { return .failure(.methodNotAllowed(method.rawValue, allow: allow)) }
        switch resource {
        case .page: return .success(.page)
        case .live: return .success(.live)
        case .ready: return .success(.ready)
        case .metrics: return .success(.metrics)
        case .tickets: return .success(.ticket)
        case .session: return .success(method == .POST ? .startSession : .endSession)
        case .lobbyEvents: return .success(.stream(.lobby))
        case .lobbyMessages: return .success(.publish(.lobby))
        case .roomEvents(let name), .roomMessages(let name):
            guard let room = RoomName(name) else { return .failure(.invalidRoom(String(name))) }
            if case .roomEvents = resource { return .success(.stream(room)) }
            return .success(method == .POST ? .publish(room) : .history(room))
        }
    }

    /// The paths the node serves.
    private enum Resource {
        case page, live, ready, metrics, lobbyEvents, lobbyMessages, tickets, session
        case roomEvents(Substring)
        case roomMessages(Substring)

        init?(path: Substring) {
            switch path {
            case "/": self = .page
            case "/health/live": self = .live
            case "/health/ready", "/health": self = .ready
            case "/metrics": self = .metrics
            case "/events": self = .lobbyEvents
            case "/messages": self = .lobbyMessages
            case "/auth/tickets": self = .tickets
            case "/auth/session": self = .session
            default:
                guard path.hasPrefix("/rooms/") else { return nil }
                let parts = path.dropFirst("/rooms/".count).split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty else { return nil }
                switch parts[1] {
                case "events": self = .roomEvents(parts[0])
                case "messages": self = .roomMessages(parts[0])
                default: return nil
                }
            }
        }

        /// `HEAD` wherever `GET` is but for streams: a stream has no end, so no `HEAD` either.
        var methods: [HTTPMethod] {
            switch self {
            case .page, .live, .ready, .metrics: [.GET, .HEAD]
            case .lobbyEvents, .roomEvents: [.GET]
            case .lobbyMessages: [.POST]
            case .roomMessages: [.GET, .HEAD, .POST]
            case .tickets: [.POST]
            case .session: [.POST, .DELETE]
            }
        }
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
        guard let query else { return nil }
        for item in query.split(separator: "&", omittingEmptySubsequences: true) {
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = PercentDecoding.bytes(pair[0].utf8, plusAsSpace: true), key.elementsEqual(name.utf8) else { continue }
            guard let bytes = PercentDecoding.bytes((pair.count > 1 ? pair[1] : Substring()).utf8, plusAsSpace: true) else { return nil }
            return String(validating: bytes, as: UTF8.self)
        }
        return nil
    }
}

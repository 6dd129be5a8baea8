/// An independent Server-Sent Events parser, written from the WHATWG "event stream
/// interpretation" rules, so tests check the relay's encoder against the standard rather
/// than against itself.
public struct SSEParser: Sendable {
    /// One dispatched event.
    public struct Event: Sendable, Equatable {
        public var type: String
        public var data: String
        /// The last event id buffer when the event was dispatched.
        public var lastEventID: String

        public init(type: String, data: String, lastEventID: String) {
            self.type = type
            self.data = data
            self.lastEventID = lastEventID
        }
    }

    public private(set) var lastEventID = ""
    public private(set) var retry: Int?
    public private(set) var comments: [String] = []
    private var dataBuffer = ""
    private var eventType = ""
    private var line: [UInt8] = []
    private var lastWasCR = false

    public init() {}

    /// Feeds bytes; returns the events completed by them.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Event] {
        var events: [Event] = []
        for byte in bytes {
            if lastWasCR {
                lastWasCR = false
                if byte == UInt8(ascii: "\n") { continue }  // CRLF is one line end
            }
            switch byte {
            case UInt8(ascii: "\r"):
                lastWasCR = true
                if let event = processLine() { events.append(event) }
            case UInt8(ascii: "\n"):
                if let event = processLine() { events.append(event) }
            default:
                line.append(byte)
            }
        }
        return events
    }

    private mutating func processLine() -> Event? {
        let text = String(decoding: line, as: UTF8.self)
        line.removeAll(keepingCapacity: true)
        if text.isEmpty { return dispatch() }
        if text.hasPrefix(":") {
            comments.append(String(text.dropFirst()))
            return nil
        }
        var field = text
        var value = ""
        if let colon = text.firstIndex(of: ":") {
            field = String(text[..<colon])
            value = String(text[text.index(after: colon)...])
            if value.hasPrefix(" ") { value.removeFirst() }
        }
        switch field {
        case "event": eventType = value
        case "data": dataBuffer += value + "\n"
        case "id": if !value.contains("\0") { lastEventID = value }
        case "retry": if !value.isEmpty, value.allSatisfy(\.isASCII), let ms = Int(value), ms >= 0 { retry = ms }
        default: break
        }
        return nil
    }

    private mutating func dispatch() -> Event? {
        defer {
            dataBuffer = ""
            eventType = ""
        }
        guard !dataBuffer.isEmpty else { return nil }
        var data = dataBuffer
        data.removeLast()
        return Event(type: eventType.isEmpty ? "message" : eventType, data: data, lastEventID: lastEventID)
    }
}

import ChatRelay
import Logging
import NIOCore

/// Writes each log record as one line of text on standard error, its metadata in logfmt:
/// `2026-12-03T18:28:16.123Z info chat-relay: node=n-1 reason=forbidden sub="eve x=1" access refused`.
///
/// A value with a space, `=`, a quote, a backslash or a control character is quoted, with `"`
/// and `\` escaped and control characters written as escapes: a value a client chose (a token's
/// `sub`, a room) can never pass for another field or another line. (swift-log's stream handler
/// writes values bare.)
struct TextLogHandler: LineLogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, metadataProvider: Logger.MetadataProvider?) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    func line(level: Logger.Level, message: String, fields: [(key: String, value: Logger.Metadata.Value)]) -> ByteBuffer {
        var line = ByteBuffer()
        Timestamp.writeRFC3339(milliseconds: Timestamp.nowMilliseconds(), into: &line)
        line.writeString(" \(level.rawValue) ")
        Self.write(label, quoting: true, into: &line)
        line.writeStaticString(":")
        for (key, value) in fields {
            line.writeStaticString(" ")
            Self.write(key, quoting: true, into: &line)
            line.writeStaticString("=")
            Self.write(value.description, quoting: true, into: &line)
        }
        line.writeStaticString(" ")
        Self.write(message, quoting: false, into: &line)
        line.writeStaticString("\n")
        return line
    }

    /// Writes `text`: quoted if it needs to be (`quoting`) and holds a space, `=` or `"`; with
    /// `"`, `\` and control characters escaped whenever it is quoted, and control characters
    /// escaped always, so a record stays one line.
    static func write(_ text: String, quoting: Bool, into line: inout ByteBuffer) {
        let needsQuotes =
            quoting
            && (text.isEmpty
                || text.unicodeScalars.contains { $0 == " " || $0 == "=" || $0 == "\"" || $0 == "\\" || MessageDraft.isControl($0) })
        guard needsQuotes || text.unicodeScalars.contains(where: MessageDraft.isControl) else {
            line.writeString(text)
            return
        }
        var escaped = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"" where needsQuotes: escaped += "\\\""
            case "\\" where needsQuotes: escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where MessageDraft.isControl(scalar): escaped += "\\u{\(String(scalar.value, radix: 16))}"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        line.writeString(needsQuotes ? "\"\(escaped)\"" : escaped)
    }
}

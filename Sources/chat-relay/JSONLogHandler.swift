import ChatRelay
import Logging
import NIOCore

/// Writes each log record as one JSON object a line on standard error:
/// `{"time":"…","level":"info","label":"…","message":"…","node":"…", …metadata}`.
struct JSONLogHandler: LineLogHandler {
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
        line.writeStaticString("{\"time\":\"")
        Timestamp.writeRFC3339(milliseconds: Timestamp.nowMilliseconds(), into: &line)
        line.writeStaticString("\",\"level\":")
        JSONString.write(level.rawValue, into: &line)
        line.writeStaticString(",\"label\":")
        JSONString.write(label, into: &line)
        line.writeStaticString(",\"message\":")
        JSONString.write(message, into: &line)
        for (key, value) in fields {
            line.writeStaticString(",")
            JSONString.write(key, into: &line)
            line.writeStaticString(":")
            JSONString.write(value.description, into: &line)
        }
        line.writeStaticString("}\n")
        return line
    }
}

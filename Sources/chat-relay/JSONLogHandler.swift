import ChatRelay
import Foundation
import Logging
import NIOCore

/// Writes each log record as one JSON object a line on standard error:
/// `{"time":"…","level":"info","label":"…","message":"…","node":"…", …metadata}`.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, metadataProvider: Logger.MetadataProvider?) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadataProvider?.get() ?? [:]
        merged.merge(metadata) { $1 }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        var line = ByteBuffer()
        line.writeStaticString("{\"time\":\"")
        Timestamp.writeRFC3339(milliseconds: Timestamp.nowMilliseconds(), into: &line)
        line.writeStaticString("\",\"level\":")
        JSONString.write(event.level.rawValue, into: &line)
        line.writeStaticString(",\"label\":")
        JSONString.write(label, into: &line)
        line.writeStaticString(",\"message\":")
        JSONString.write(event.message.description, into: &line)
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line.writeStaticString(",")
            JSONString.write(key, into: &line)
            line.writeStaticString(":")
            JSONString.write(value.description, into: &line)
        }
        line.writeStaticString("}\n")
        // One write(2) per record, so lines from different threads never interleave mid-line.
        line.withUnsafeReadableBytes { bytes in
            _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count)
        }
    }
}

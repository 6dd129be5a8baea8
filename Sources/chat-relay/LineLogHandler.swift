import Foundation
import Logging
import NIOCore

/// What the node's log handlers share: a label, a level, their own metadata and the provider's,
/// merged with each record's in order, and one `write(2)` of a whole line per record (so lines
/// from different threads never interleave mid-line). A handler says how a record is spelled.
protocol LineLogHandler: LogHandler {
    var label: String { get }

    /// The record as one line, its newline included.
    func line(level: Logger.Level, message: String, fields: [(key: String, value: Logger.Metadata.Value)]) -> ByteBuffer
}

extension LineLogHandler {
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadataProvider?.get() ?? [:]
        merged.merge(metadata) { $1 }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let line = line(level: event.level, message: event.message.description, fields: merged.sorted { $0.key < $1.key })
        line.withUnsafeReadableBytes { bytes in
            _ = Glibc.write(STDERR_FILENO, bytes.baseAddress, bytes.count)
        }
    }
}

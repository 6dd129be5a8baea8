import NIOCore

/// Splits an SSE body into lines as its bytes arrive, in pieces of any size, and hands every
/// `data:` line that carries a benchmark message to a closure.
///
/// A line cut by a chunk boundary is kept until its end arrives; whole lines are read in place,
/// without copying, so scanning costs about one pass over the bytes.
struct SSEDataScanner {
    /// The start of a line whose end has not arrived yet.
    private var partial: [UInt8] = []
    /// Bytes of one line beyond which the scanner gives up on it (a benchmark line is short).
    private let maxLine = 1 << 16

    mutating func scan(_ buffer: ByteBuffer, _ found: (_ sequence: Int, _ sentNanoseconds: UInt64) -> Void) {
        buffer.withUnsafeReadableBytes { bytes in
            var start = 0
            while start < bytes.count {
                let rest = UnsafeRawBufferPointer(rebasing: bytes[start...])
                guard let newline = rest.firstIndex(of: UInt8(ascii: "\n")) else {
                    if partial.count + rest.count <= maxLine { partial.append(contentsOf: rest) }
                    return
                }
                let line = UnsafeRawBufferPointer(rebasing: rest[..<newline])
                if partial.isEmpty {
                    Self.handle(line, found)
                } else {
                    partial.append(contentsOf: line)
                    partial.withUnsafeBytes { Self.handle($0, found) }
                    partial.removeAll(keepingCapacity: true)
                }
                start += newline + 1
            }
        }
    }

    private static func handle(_ line: UnsafeRawBufferPointer, _ found: (Int, UInt64) -> Void) {
        // Only `data:` lines carry messages; `id:`, `event:`, comments and `retry:` are skipped.
        guard line.count > 5, line[0] == UInt8(ascii: "d"), line[1] == UInt8(ascii: "a"),
            line[2] == UInt8(ascii: "t"), line[3] == UInt8(ascii: "a"), line[4] == UInt8(ascii: ":")
        else { return }
        if let message = BenchPayload.parse(line) { found(message.sequence, message.sentNanoseconds) }
    }
}

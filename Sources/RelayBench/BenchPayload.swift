/// The text every benchmark message carries: `bench seq=<n> t=<send time>` and padding.
///
/// The sequence number tells each subscriber which message it got (for loss, duplicate and order
/// accounting); the send time, monotonic nanoseconds of the benchmark process, gives the latency.
/// Both survive any server that passes the text through unchanged, JSON-escaped or not, since they
/// are plain ASCII digits after ASCII markers.
public enum BenchPayload {
    /// The JSON body of message `sequence`, sent at `sentNanoseconds`, padded to about `size` bytes.
    public static func body(sequence: Int, sentNanoseconds: UInt64, size: Int) -> String {
        let head = "{\"user\":\"bench\",\"text\":\"bench seq=\(sequence) t=\(sentNanoseconds)"
        let tail = "\"}"
        let padding = max(0, size - head.utf8.count - tail.utf8.count - 1)
        return padding > 0 ? head + " " + String(repeating: "x", count: padding) + tail : head + tail
    }

    /// Finds `seq=<n> t=<ns>` in one line of bytes; nil when the line holds no benchmark message.
    public static func parse(_ line: UnsafeRawBufferPointer) -> (sequence: Int, sentNanoseconds: UInt64)? {
        guard let seqStart = find(marker: seqMarker, in: line, from: 0) else { return nil }
        var index = seqStart
        guard let sequence = digits(line, &index) else { return nil }
        guard index + 3 <= line.count, line[index] == UInt8(ascii: " "), line[index + 1] == UInt8(ascii: "t"),
            line[index + 2] == UInt8(ascii: "=")
        else {
            return nil
        }
        index += 3
        guard let sent = digits(line, &index) else { return nil }
        return (Int(sequence), sent)
    }

    private static let seqMarker: [UInt8] = Array("seq=".utf8)

    /// The index just past the first `marker` in `line` at or after `from`.
    private static func find(marker: [UInt8], in line: UnsafeRawBufferPointer, from: Int) -> Int? {
        let count = marker.count
        guard line.count >= count else { return nil }
        var index = from
        let first = marker[0]
        while index + count <= line.count {
            if line[index] == first {
                var matched = 1
                while matched < count, line[index + matched] == marker[matched] { matched += 1 }
                if matched == count { return index + count }
            }
            index += 1
        }
        return nil
    }

    private static func digits(_ line: UnsafeRawBufferPointer, _ index: inout Int) -> UInt64? {
        var value: UInt64 = 0
        let start = index
        while index < line.count, line[index] >= UInt8(ascii: "0"), line[index] <= UInt8(ascii: "9"), index - start < 19 {
            value = value * 10 + UInt64(line[index] - UInt8(ascii: "0"))
            index += 1
        }
        return index > start ? value : nil
    }
}

import CHiredis
import NIOCore

/// hiredis' reply reader: bytes from a Redis connection in, complete replies out.
///
/// The connection's bytes come from a NIO channel; hiredis only parses them (its reader does no
/// I/O), so nothing here blocks. Not thread-safe: each reader belongs to one connection's handler,
/// on its event loop.
final class RedisReplyReader {
    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        guard let reader = redisReaderCreate() else { fatalError("hiredis: out of memory creating a reply reader") }
        self.reader = reader
    }

    deinit {
        redisReaderFree(reader)
    }

    /// Hands the reader the bytes the connection received.
    func feed(_ bytes: ByteBuffer) throws(RedisError) {
        let status = bytes.withUnsafeReadableBytes { raw in
            redisReaderFeed(reader, raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count)
        }
        guard status == REDIS_OK else { throw .connectionLost("reply reader: \(errorString)") }
    }

    /// The next complete reply, or nil until more bytes arrive. Throws on a protocol error: the
    /// connection is then unusable.
    func next() throws(RedisError) -> RedisReply? {
        var raw: UnsafeMutableRawPointer? = nil
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
            throw .connectionLost("malformed reply: \(errorString)")
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return Self.convert(raw.assumingMemoryBound(to: redisReply.self))
    }

    private var errorString: String {
        withUnsafeBytes(of: &reader.pointee.errstr) { bytes in
            String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    /// hiredis' reply tree as plain Swift values.
    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            return .bulk(value.len == 0 ? [] : Array(UnsafeRawBufferPointer(start: value.str, count: value.len)))
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: UnsafeRawBufferPointer(start: value.str, count: value.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: UnsafeRawBufferPointer(start: value.str, count: value.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(value.integer))
        case REDIS_REPLY_ARRAY:
            // hiredis sets every element of an array it read; a missing one reads as nil, never a trap.
            return .array((0..<value.elements).map { value.element[$0].map(convert) ?? .null })
        default:
            return .null
        }
    }
}

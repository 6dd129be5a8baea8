import NIOCore

extension ByteBuffer {
    /// Appends `command` in RESP, as an array of bulk strings: binary-safe, never formatted as text.
    mutating func writeRedisCommand(_ command: RedisCommand) {
        writeInteger(UInt8(ascii: "*"))
        writeString(String(command.count))
        writeStaticString("\r\n")
        for argument in command {
            writeInteger(UInt8(ascii: "$"))
            writeString(String(argument.bytes.count))
            writeStaticString("\r\n")
            writeBytes(argument.bytes)
            writeStaticString("\r\n")
        }
    }
}

extension RedisCommand {
    /// The RESP bytes of the command, counted for a buffer's capacity.
    var encodedSizeEstimate: Int {
        reduce(16) { $0 + $1.bytes.count + 16 }
    }
}

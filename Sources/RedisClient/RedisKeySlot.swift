/// Redis Cluster's key space: 16 384 hash slots, a key's slot the CRC16 (XMODEM) of the key, or of
/// its hash tag (the part between the first `{` and the next `}`, when not empty), modulo 16 384.
/// Keys that share a hash tag share a slot, so one script or transaction may use them together.
///
/// As the Redis Cluster specification defines it (its CRC16 test vector: "123456789" → 0x31C3).
public enum RedisKeySlot {
    public static let count = 16384

    /// The slot of `key`.
    public static func of(_ key: some Collection<UInt8>) -> Int {
        Int(crc16(hashTag(key)) & 0x3FFF)
    }

    /// The slot of `key`, as UTF-8.
    public static func of(_ key: String) -> Int {
        of(key.utf8)
    }

    /// What of `key` is hashed: its hash tag if it has a non-empty one, else all of it.
    static func hashTag<Key: Collection<UInt8>>(_ key: Key) -> Key.SubSequence {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")) else { return key[...] }
        let afterOpen = key.index(after: open)
        guard let close = key[afterOpen...].firstIndex(of: UInt8(ascii: "}")), close != afterOpen else { return key[...] }
        return key[afterOpen..<close]
    }

    /// CRC16-CCITT (XMODEM) of `bytes`: polynomial 0x1021, initial value 0, no reflection.
    public static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int((crc >> 8) ^ UInt16(byte))]
        }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }
}

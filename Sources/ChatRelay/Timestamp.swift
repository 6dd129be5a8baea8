import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Wall-clock time in milliseconds and its RFC 3339 form, without Foundation's formatters.
public enum Timestamp {
    /// Milliseconds since the Unix epoch, from the system's real-time clock.
    public static func nowMilliseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, UTC.
    public static func rfc3339(milliseconds: UInt64) -> String {
        var buffer = ByteBuffer()
        writeRFC3339(milliseconds: milliseconds, into: &buffer)
        return String(buffer: buffer)
    }

    /// Writes `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC) for the given milliseconds since the epoch.
    public static func writeRFC3339(milliseconds: UInt64, into buffer: inout ByteBuffer) {
        let totalSeconds = Int64(milliseconds / 1000)
        let millis = Int(milliseconds % 1000)
        let days = totalSeconds / 86_400
        let secondsOfDay = Int(totalSeconds % 86_400)
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        write(Int(year), digits: 4, into: &buffer)
        buffer.writeInteger(UInt8(ascii: "-"))
        write(month, digits: 2, into: &buffer)
        buffer.writeInteger(UInt8(ascii: "-"))
        write(day, digits: 2, into: &buffer)
        buffer.writeInteger(UInt8(ascii: "T"))
        write(secondsOfDay / 3600, digits: 2, into: &buffer)
        buffer.writeInteger(UInt8(ascii: ":"))
        write(secondsOfDay / 60 % 60, digits: 2, into: &buffer)
        buffer.writeInteger(UInt8(ascii: ":"))
        write(secondsOfDay % 60, digits: 2, into: &buffer)
        buffer.writeInteger(UInt8(ascii: "."))
        write(millis, digits: 3, into: &buffer)
        buffer.writeInteger(UInt8(ascii: "Z"))
    }

    /// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    static func civilDate(daysSinceEpoch: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = Int(doy - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    private static func write(_ value: Int, digits: Int, into buffer: inout ByteBuffer) {
        var divisor = 1
        for _ in 1..<digits { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            buffer.writeInteger(UInt8(ascii: "0") + UInt8(rest / divisor % 10))
            rest %= divisor
            divisor /= 10
        }
    }
}

/// Monotonic time, for heartbeats and drain timing: never goes back when the wall clock is set.
public enum MonotonicClock {
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

import ChatRelay
import Foundation
import Testing

@Suite struct TimestampTests {
    @Test func knownInstants() {
        #expect(Timestamp.rfc3339(milliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp.rfc3339(milliseconds: 1_764_000_000_123) == "2025-11-24T16:00:00.123Z")
        #expect(Timestamp.rfc3339(milliseconds: 951_782_400_000) == "2000-02-29T00:00:00.000Z")
    }

    @Test func agreesWithFoundationOnRandomInstants() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        for _ in 0..<2000 {
            let ms = UInt64.random(in: 0...4_102_444_800_000)  // up to 2100
            // Whole seconds through Foundation (exact in a Double), the milliseconds added by hand.
            let seconds = formatter.string(from: Date(timeIntervalSince1970: Double(ms / 1000)))
            let expected = seconds.dropLast() + "." + String(format: "%03d", Int(ms % 1000)) + "Z"
            #expect(Timestamp.rfc3339(milliseconds: ms) == expected, "ms \(ms)")
        }
    }
}

import Histogram

/// The outcome of one run, as printed (text) or emitted (`--json`).
public struct BenchReport: Codable, Sendable {
    public struct Latency: Codable, Sendable {
        public var p50: Double
        public var p90: Double
        public var p99: Double
        public var p999: Double
        public var max: Double
        public var mean: Double
        public var count: UInt64

        /// Percentiles of a histogram of nanoseconds, in milliseconds.
        init(_ histogram: Histogram<UInt64>) {
            func ms(_ nanoseconds: UInt64) -> Double { (Double(nanoseconds) / 1000).rounded() / 1000 }
            p50 = ms(histogram.valueAtPercentile(50))
            p90 = ms(histogram.valueAtPercentile(90))
            p99 = ms(histogram.valueAtPercentile(99))
            p999 = ms(histogram.valueAtPercentile(99.9))
            max = ms(histogram.max)
            mean = (histogram.mean / 1000).rounded() / 1000
            count = histogram.totalCount
        }
    }

    public var targets: [String]
    public var room: String
    public var subscribers: Int
    /// Streams that answered 200.
    public var connected: Int
    /// Streams that could not be opened, by reason.
    public var refused: [String: Int]
    /// Streams that ended before the run did.
    public var disconnected: Int
    public var rateAsked: Double
    public var rateAchieved: Double
    public var messagesSent: Int
    public var messagesAccepted: Int
    /// POSTs not answered 2xx, by reason.
    public var publishFailures: [String: Int]
    /// Accepted messages × subscribers that were open: what should have arrived.
    public var deliveriesExpected: Int
    public var delivered: Int
    public var lost: Int
    public var duplicated: Int
    public var outOfOrder: Int
    public var deliveriesPerSecond: Double
    /// Latency from the POST's write to the event's arrival.
    public var latencyFromSend: Latency
    /// Latency from the moment the message was due by the schedule to its arrival.
    public var latencyFromSchedule: Latency
    /// From a POST's write to its answer.
    public var publishResponse: Latency
    /// Seconds from the first message due to the last delivery.
    public var seconds: Double
    /// CPU seconds the load generator itself used while publishing and receiving.
    public var clientCPUSeconds: Double
    public var clientCPUMicrosecondsPerDelivery: Double

    /// True when every accepted message reached every subscriber exactly once, in order, and every
    /// subscriber could connect.
    public var isClean: Bool {
        lost == 0 && duplicated == 0 && outOfOrder == 0 && refused.isEmpty && connected + disconnected == subscribers
    }

    /// A summary for people.
    public var text: String {
        func latency(_ name: String, _ value: Latency) -> String {
            "\(name) p50 \(value.p50) ms  p90 \(value.p90) ms  p99 \(value.p99) ms  p99.9 \(value.p999) ms  max \(value.max) ms"
        }
        func reasons(_ counts: [String: Int]) -> String {
            counts.isEmpty ? "none" : counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        }
        return """
            targets      \(targets.joined(separator: " ")) room \(room)
            subscribers  \(subscribers) asked, \(connected) connected, \(disconnected) disconnected, refused: \(reasons(refused))
            rate         \(format(rateAsked)) msg/s asked, \(format(rateAchieved)) msg/s achieved
            messages     \(messagesSent) sent, \(messagesAccepted) accepted, failed: \(reasons(publishFailures))
            deliveries   \(delivered) of \(deliveriesExpected) expected, \(format(deliveriesPerSecond))/s over \(format(seconds)) s
            errors       \(lost) lost, \(duplicated) duplicated, \(outOfOrder) out of order
            \(latency("from send    ", latencyFromSend))
            \(latency("from schedule", latencyFromSchedule))
            \(latency("POST answer  ", publishResponse))
            client CPU   \(format(clientCPUSeconds)) s, \(format(clientCPUMicrosecondsPerDelivery)) µs per delivery
            result       \(isClean ? "every accepted message reached every subscriber once, in order" : "NOT CLEAN")
            """
    }

    private func format(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }
}

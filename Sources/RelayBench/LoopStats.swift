import Histogram

/// The counters and latency histograms of the subscribers on one event loop.
///
/// Invariant that makes `@unchecked Sendable` true: every property is read and written only on
/// `loop`'s thread (handlers record on it; the run collects with `loop.submit`), so no two threads
/// ever touch it at once.
final class LoopStats: @unchecked Sendable {
    /// Delivery latency from the moment the POST was written (send time carried in the message).
    var fromSend = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
    /// Delivery latency from the moment the message was due by the schedule (coordinated omission).
    var fromSchedule = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
    var delivered = 0
    var duplicates = 0
    var outOfOrder = 0
    var foreign = 0
    /// Streams that answered 200 and are open.
    var connected = 0
    /// Streams that ended or failed after they were connected.
    var disconnected = 0
    /// Streams that could not be opened, by reason.
    var failures: [String: Int] = [:]
    /// The subscribers of this loop, for the final loss count.
    var ledgers: [SubscriberHandler] = []
    /// When message 0 was due (monotonic nanoseconds) and the nanoseconds between two messages:
    /// set on the loop before the first message is sent.
    var scheduleStart: UInt64 = 0
    var interval: Double = 0
    /// When the latest message arrived (monotonic nanoseconds).
    var lastDelivery: UInt64 = 0

    init() {}

    /// When message `sequence` was due by the schedule.
    func due(_ sequence: Int) -> UInt64 {
        scheduleStart &+ UInt64(Double(sequence) * interval)
    }

    func snapshot() -> Snapshot {
        Snapshot(
            fromSend: fromSend, fromSchedule: fromSchedule, delivered: delivered, duplicates: duplicates,
            outOfOrder: outOfOrder, foreign: foreign, connected: connected, disconnected: disconnected, failures: failures,
            lastDelivery: lastDelivery)
    }

    /// A copy of the numbers, taken on the loop and read anywhere.
    struct Snapshot: Sendable {
        var fromSend: Histogram<UInt64>
        var fromSchedule: Histogram<UInt64>
        var delivered: Int
        var duplicates: Int
        var outOfOrder: Int
        var foreign: Int
        var connected: Int
        var disconnected: Int
        var failures: [String: Int]
        var lastDelivery: UInt64

        static func merged(_ snapshots: [Snapshot]) -> Snapshot {
            var total = snapshots.first!
            for other in snapshots.dropFirst() {
                total.fromSend.add(other.fromSend)
                total.fromSchedule.add(other.fromSchedule)
                total.delivered += other.delivered
                total.duplicates += other.duplicates
                total.outOfOrder += other.outOfOrder
                total.foreign += other.foreign
                total.connected += other.connected
                total.disconnected += other.disconnected
                total.failures.merge(other.failures, uniquingKeysWith: +)
                total.lastDelivery = max(total.lastDelivery, other.lastDelivery)
            }
            return total
        }
    }
}

import Foundation
import Synchronization

/// Publishes as a careful client does: each message with its own Idempotency-Key, retried until a
/// node accepts it (201, or 200 when an earlier try was stored after all). Keeps the accepted ids,
/// so a test can compare what subscribers received with exactly what was acknowledged.
public final class Publisher: Sendable {
    private let accepted = Mutex<[String: [String]]>([:])  // room → ids, in acknowledgement order
    private let refusals = Mutex(0)

    public init() {}

    /// POSTs `text` to `room` at `baseURL` until it is accepted or `patience` runs out; returns
    /// whether it was accepted. Every refusal on the way (503, 502, connection error) is counted.
    @discardableResult
    public func post(_ baseURL: String, room: String, text: String, patience: Duration = .seconds(30)) async -> Bool {
        let key = UUID().uuidString
        let deadline = ContinuousClock.now + patience
        while ContinuousClock.now < deadline {
            if let reply = try? await HTTP.postMessage(
                "\(baseURL)/rooms/\(room)/messages", user: "pub", text: text, headers: [("Idempotency-Key", key)]),
                reply.status == 201 || reply.status == 200, let id = reply.json["id"] as? String
            {
                accepted.withLock { $0[room, default: []].append(id) }
                return true
            }
            refusals.withLock { $0 += 1 }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// POSTs `text` to `room` once, without an Idempotency-Key (so never retried); keeps the id
    /// if it was accepted. Returns the status, nil when no answer came.
    @discardableResult
    public func postOnce(_ baseURL: String, room: String, text: String) async -> Int? {
        guard let reply = try? await HTTP.postMessage("\(baseURL)/rooms/\(room)/messages", user: "pub", text: text) else {
            return nil
        }
        if reply.status == 201, let id = reply.json["id"] as? String {
            accepted.withLock { $0[room, default: []].append(id) }
        }
        return reply.status
    }

    /// How many tries were refused so far.
    public var refused: Int { refusals.withLock { $0 } }

    /// How many messages were accepted in `room`.
    public func count(_ room: String) -> Int { accepted.withLock { $0[room]?.count ?? 0 } }

    /// The ids accepted for `room`, in id order.
    public func ids(_ room: String) -> [String] {
        accepted.withLock { $0[room] ?? [] }.sorted(by: messageIDPrecedes)
    }
}

/// Message ids in their total order: milliseconds, then sequence, numerically.
public func messageIDPrecedes(_ a: String, _ b: String) -> Bool {
    let pa = a.split(separator: "-").compactMap { UInt64($0) }
    let pb = b.split(separator: "-").compactMap { UInt64($0) }
    return pa[0] != pb[0] ? pa[0] < pb[0] : pa[1] < pb[1]
}

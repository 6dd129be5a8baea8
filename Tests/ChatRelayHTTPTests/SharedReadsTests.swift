import ChatRelay
import Synchronization
import Testing

@testable import ChatRelayHTTP

@Suite struct SharedReadsTests {
    /// A read that counts its calls, answers `value` after `delay`, and asks to be kept or not.
    final class Source: Sendable {
        let calls = Atomic(0)
        let delay: Duration
        let keep: Bool
        let fails: Bool

        init(delay: Duration = .zero, keep: Bool = true, fails: Bool = false) {
            (self.delay, self.keep, self.fails) = (delay, keep, fails)
        }

        var read: SharedReads<String, Int>.Read {
            { [self] in
                let call = calls.add(1, ordering: .relaxed).newValue
                try? await Task.sleep(for: delay)
                return (fails ? .failure(APIError.unavailable("down")) : .success(call), keep)
            }
        }
    }

    @Test func concurrentCallersShareOneRead() async throws {
        let reads = SharedReads<String, Int>(maxAge: .seconds(60), capacity: 10)
        let source = Source(delay: .seconds(2), keep: false)
        let values = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<20 { group.addTask { try await reads.value(for: "a", read: source.read) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(values == Array(repeating: 1, count: 20))
        #expect(source.calls.load(ordering: .relaxed) == 1)
        // Not asked to be kept: the next caller reads again, and nothing is held.
        #expect(try await reads.value(for: "a", read: source.read) == 2)
        #expect(reads.count == 0)
    }

    @Test func aKeptValueIsServedUntilItIsTooOld() async throws {
        let reads = SharedReads<String, Int>(maxAge: .seconds(2), capacity: 10)
        let source = Source()
        #expect(try await reads.value(for: "a", read: source.read) == 1)
        for _ in 0..<50 { #expect(try await reads.value(for: "a", read: source.read) == 1) }
        #expect(source.calls.load(ordering: .relaxed) == 1)
        // Another key is a read of its own.
        #expect(try await reads.value(for: "b", read: source.read) == 2)
        try await Task.sleep(for: .milliseconds(2100))
        #expect(try await reads.value(for: "a", read: source.read) == 3)
    }

    @Test func aFailureIsNeitherKeptNorShared() async throws {
        let reads = SharedReads<String, Int>(maxAge: .seconds(60), capacity: 10)
        let failing = Source(fails: true)
        await #expect(throws: APIError.self) { try await reads.value(for: "a", read: failing.read) }
        await #expect(throws: APIError.self) { try await reads.value(for: "a", read: failing.read) }
        #expect(failing.calls.load(ordering: .relaxed) == 2)
        #expect(reads.count == 0)
        #expect(try await reads.value(for: "a", read: Source().read) == 1)
    }

    @Test func keptValuesStayWithinTheCapacity() async throws {
        let reads = SharedReads<String, Int>(maxAge: .seconds(3), capacity: 3)
        let source = Source()
        for key in ["a", "b", "c", "d", "e"] { _ = try await reads.value(for: key, read: source.read) }
        #expect(reads.count == 3)
        // Those kept are served; the others are read again (and not kept while the rest are young).
        #expect(try await reads.value(for: "a", read: source.read) == 1)
        #expect(try await reads.value(for: "e", read: source.read) == 6)
        #expect(reads.count == 3)
        // Once they are old, a new key sweeps them out and is kept.
        try await Task.sleep(for: .milliseconds(3100))
        #expect(try await reads.value(for: "f", read: source.read) == 7)
        #expect(reads.count == 1)
        #expect(try await reads.value(for: "f", read: source.read) == 7)
    }
}

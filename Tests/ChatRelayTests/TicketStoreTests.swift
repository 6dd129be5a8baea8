import Synchronization
import Testing

@testable import ChatRelay

/// The embedded broker's tickets: each taken once, gone after its time, bounded in number.
@Suite struct TicketStoreTests {
    final class Clock: Sendable {
        let now = Mutex<UInt64>(1_000)
        func advance(_ milliseconds: UInt64) { now.withLock { $0 += milliseconds } }
    }

    @Test func aTicketIsTakenOnceAndExpires() throws {
        let clock = Clock()
        let store = TicketStore(capacity: 10, clock: { clock.now.withLock { $0 } })
        try store.store("a", value: [1, 2], ttl: .seconds(30))
        #expect(store.redeem("a") == [1, 2])
        #expect(store.redeem("a") == nil)
        try store.store("b", value: [3], ttl: .seconds(30))
        clock.advance(30_000)
        #expect(store.redeem("b") == nil)
        #expect(store.count == 0)
    }

    @Test func theStoreIsBoundedAndMakesRoomFromExpiredTickets() throws {
        let clock = Clock()
        let store = TicketStore(capacity: 3, clock: { clock.now.withLock { $0 } })
        for index in 0..<3 { try store.store("t\(index)", value: [], ttl: .seconds(1)) }
        #expect(throws: BrokerError.self) { try store.store("t3", value: [], ttl: .seconds(1)) }
        #expect(throws: BrokerError.self) { try store.store("t0", value: [], ttl: .seconds(1)) }
        clock.advance(1_000)
        try store.store("t3", value: [9], ttl: .seconds(1))
        #expect(store.count == 1)
        #expect(store.redeem("t3") == [9])
    }

    @Test func theEmbeddedBrokerKeepsTicketsForOneRedemption() async throws {
        let broker = EmbeddedBroker(history: 10, sink: RecordingSink())
        try await broker.storeTicket("x", value: [7], ttl: .seconds(5))
        #expect(try await broker.redeemTicket("x") == [7])
        #expect(try await broker.redeemTicket("x") == nil)
    }
}

import NIOCore
import RedisClient
import Testing

@testable import ChatRelay

/// What Redis answers is input too: replies of every shape, right and wrong, reach the readers of
/// stream entries, channel events, the slot map and redirections, which refuse what they cannot
/// read and never trap. And nothing written into Redis by someone else can forge an SSE event.
@Suite struct RedisReplyInputTests {
    /// A random reply, leaning to the shapes the readers expect (ids, pairs, small arrays).
    static func reply(_ random: inout some RandomNumberGenerator, depth: Int = 0) -> RedisReply {
        let texts: [String] = [
            "1-0", "0-0", "\(UInt64.max)-\(UInt64.max)", "18446744073709551616-0", "-1", "r", "m", "", "r 1-0 {}", "r member {}",
            "r typing {\"a\":1}", "MOVED 3999 127.0.0.1:6381", "ASK 1 :0", "MOVED -1 x:99999999999", "inf", "nan", "1e400", "-inf",
            "r 1-0 {\"a\":\"b\"}\n\nid: 9-9\ndata: forged", "r 1-0 {}\r",
        ]
        switch Int.random(in: 0...(depth > 3 ? 3 : 6), using: &random) {
        case 0: return .bulk(Array(texts.randomElement(using: &random)!.utf8))
        case 1: return .integer([0, 1, -1, 16383, 16384, .max, .min, 65536].randomElement(using: &random)!)
        case 2: return [.null, .status("OK"), .error("ERR x"), .error("NOSCRIPT"), .bulk([])].randomElement(using: &random)!
        case 3: return .bulk((0..<Int.random(in: 0...40, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) })
        default: return .array((0..<Int.random(in: 0...5, using: &random)).map { _ in reply(&random, depth: depth + 1) })
        }
    }

    @Test func randomRepliesAreReadOrRefusedNeverTrapped() throws {
        var random = SystemRandomNumberGenerator()
        let room = try #require(RoomName("r"))
        let node = RedisSlotMap.Node(host: "127.0.0.1", port: 6379)
        var read = 0
        // A well-formed entry now and then, among the random replies and mutated into them.
        let entry = RedisReply.array([.bulk(Array("5-1".utf8)), .array([.bulk(Array("m".utf8)), .bulk(Array("\",\"room\":\"r\"}".utf8))])])
        for round in 0..<20_000 {
            let reply = round % 10 == 0 ? .array([entry, Self.reply(&random)]) : Self.reply(&random)
            if let messages = try? RedisBroker.entries(reply, room: room) { read += messages.count }
            _ = try? RedisSlotMap(clusterSlots: reply, answeredBy: node)
            _ = RedisRedirect(reply)
            if let bytes = reply.bytes {
                _ = RedisBroker.parseChannelEvent(bytes)
                _ = PresenceEntry(json: bytes)
            }
            _ = reply.pairs
        }
        // Some replies were of the right shape, so the readers were really exercised.
        #expect(read > 0)
    }

    @Test func aLineBreakInWhatRedisHoldsNeverReachesAStream() throws {
        let room = try #require(RoomName("r"))
        let forged = Array("r 1-0 {\"a\":\"b\"}\n\nid: 9-9\nevent: message\ndata: {}".utf8)
        #expect(RedisBroker.parseChannelEvent(forged) == nil)
        #expect(RedisBroker.parseEvent(Array("r typing {}\r".utf8)) == nil)
        let entry = RedisReply.array([
            .array([.bulk(Array("1-0".utf8)), .array([.bulk(Array("m".utf8)), .bulk(Array("\",\"x\":1}\n\ndata: y".utf8))])])
        ])
        #expect(try RedisBroker.entries(entry, room: room).isEmpty)
        // What a node writes is read.
        #expect(RedisBroker.parseEvent(Array("r 1-0 {\"id\":\"1-0\"}".utf8))?.id == MessageID(ms: 1, seq: 0))
    }

    @Test func slotRangesOutOfOrderOrOutOfRangeAreRefused() {
        let node = RedisSlotMap.Node(host: "127.0.0.1", port: 6379)
        let master = RedisReply.array([.bulk(Array("127.0.0.1".utf8)), .integer(6379)])
        for (first, last) in [(10, 5), (-1, 5), (0, 16384), (Int64.max, Int64.max)] as [(Int64, Int64)] {
            #expect(throws: RedisError.self) {
                try RedisSlotMap(clusterSlots: .array([.array([.integer(first), .integer(last), master])]), answeredBy: node)
            }
        }
    }
}

import RedisClient
import Testing

/// `--redis-url` as given: parsed, and never quoted with its password.
@Suite struct RedisURLTests {
    @Test func aURLIsReadWithItsCredentials() throws {
        let url = try RedisURL("redis://app:s%40cret@redis.internal:6380/2")
        #expect(url == RedisURL(host: "redis.internal", port: 6380, user: "app", password: "s@cret", database: 2))
        #expect(url.description == "redis://app:***@redis.internal:6380/2")
    }

    /// Every error about a URL quotes it without what stands before its `@`.
    @Test(arguments: [
        "redis://app:hunter2@host:99999", "redis://:hunter2@host:x", "redis://:hunter2@", "rediss://:hunter2@host",
        "http://app:hunter2@host", "redis://:hunter2@[::1]:0", "redis://:pass@word@host:notaport",
    ])
    func anErrorNeverQuotesThePassword(text: String) {
        do {
            _ = try RedisURL(text)
            Issue.record("\(text) parsed")
        } catch {
            #expect(!"\(error)".contains("hunter2") && !"\(error)".contains("word"), "\(error)")
            #expect("\(error)".contains("***"), "\(error)")
        }
    }
}

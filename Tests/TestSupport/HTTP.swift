import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Plain HTTP calls for tests, over one shared client that allows many connections per host
/// (tests hold many streams open at once).
public enum HTTP {
    public static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 20_000)
        configuration.decompression = .disabled
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// A whole response.
    public struct Reply: Sendable {
        public var status: Int
        public var headers: HTTPHeaders
        public var body: String

        public func header(_ name: String) -> String? { headers.first(name: name) }

        /// The body as a JSON object (empty when it is not one).
        public var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
        }
    }

    public static func get(_ url: String, headers: [(String, String)] = [], timeout: Duration = .seconds(10)) async throws -> Reply {
        try await request("GET", url, headers: headers, timeout: timeout)
    }

    /// POSTs `{"user":…,"text":…}` as JSON to `url`.
    public static func postMessage(_ url: String, user: String, text: String, headers: [(String, String)] = []) async throws -> Reply {
        let body = try JSONSerialization.data(withJSONObject: ["user": user, "text": text])
        return try await request("POST", url, headers: [("Content-Type", "application/json")] + headers, body: Array(body))
    }

    public static func request(
        _ method: String, _ url: String, headers: [(String, String)] = [], body: [UInt8]? = nil, timeout: Duration = .seconds(10)
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await client.execute(request, timeout: .nanoseconds(timeout.nanosecondsApprox))
        let bytes = try await response.body.collect(upTo: 64 * 1024 * 1024)
        return Reply(status: Int(response.status.code), headers: response.headers, body: String(buffer: bytes))
    }
}

extension Duration {
    var nanosecondsApprox: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}

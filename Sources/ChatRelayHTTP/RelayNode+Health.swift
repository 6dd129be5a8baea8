import ChatRelay
import Hummingbird
import NIOCore

extension RelayNode {
    /// `/health/live`, `/health/ready`, `/health` and `/metrics`.
    func addHealthRoutes(to router: Router<RelayRequestContext>) {
        router.get("/health/live") { _, _ in
            Self.json(.ok, "{\"status\":\"ok\"}")
        }
        router.get("/health/ready") { _, _ in self.readiness() }
        router.get("/health") { _, _ in self.readiness() }
        router.get("/metrics") { _, _ in
            self.metrics.brokerUp.record(self.broker.isReady ? 1 : 0)
            var bytes: [UInt8] = []
            bytes.reserveCapacity(self.registry.internalBufferCapacity())
            self.registry.emit(into: &bytes)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes))
            )
        }
    }

    /// `200` when the node can publish and receive and is not draining, else `503`.
    func readiness() -> Response {
        let ready = isReady
        var body = ByteBuffer()
        body.writeString("{\"status\":\"\(ready ? "ready" : "unavailable")\",\"node\":")
        JSONString.write(configuration.nodeID, into: &body)
        body.writeString(",\"broker\":\"\(broker.kind)\",\"brokerUp\":\(broker.isReady),\"draining\":\(hub.isDraining)")
        body.writeString(",\"connections\":\(hub.connectionCount),\"maxConnections\":\(configuration.maxConnections)")
        body.writeString(",\"openConnections\":\(connections.count),\"maxOpenConnections\":\(connections.limit)")
        body.writeString(",\"uptimeSeconds\":\((MonotonicClock.nanoseconds() - startedAt) / 1_000_000_000)}")
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"]
        if !ready { headers[.retryAfter] = "1" }
        return Response(status: ready ? .ok : .serviceUnavailable, headers: headers, body: ResponseBody(byteBuffer: body))
    }

    static func json(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}

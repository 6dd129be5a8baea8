import ChatRelay
import NIOCore
import NIOHTTP1

extension RelayNode {
    /// `GET /health/live`: the process serves HTTP.
    func liveAnswer() -> Answer {
        Answer(status: .ok, contentType: Answer.jsonType, body: Self.liveBody)
    }

    private static let liveBody = ByteBuffer(string: "{\"status\":\"ok\"}")

    /// `GET /health/ready` (and `/health`): `200` when the node can publish and receive and is not
    /// draining, else `503`.
    func readinessAnswer() -> Answer {
        let ready = isReady
        var body = ByteBuffer()
        body.writeString("{\"status\":\"\(ready ? "ready" : "unavailable")\",\"node\":")
        JSONString.write(configuration.nodeID, into: &body)
        body.writeString(",\"broker\":\"\(broker.kind)\",\"brokerUp\":\(broker.isReady),\"draining\":\(hub.isDraining)")
        body.writeString(",\"connections\":\(hub.connectionCount),\"maxConnections\":\(configuration.maxConnections)")
        body.writeString(",\"openConnections\":\(connections.count),\"maxOpenConnections\":\(connections.limit)")
        body.writeString(",\"uptimeSeconds\":\((MonotonicClock.nanoseconds() - startedAt) / 1_000_000_000)}")
        var headers = [("Cache-Control", "no-store")]
        if !ready { headers.append(("Retry-After", "1")) }
        return Answer(status: ready ? .ok : .serviceUnavailable, contentType: Answer.jsonType, body: body, headers: headers)
    }

    /// `GET /metrics`: Prometheus text.
    func metricsAnswer() -> Answer {
        metrics.brokerUp.record(broker.isReady ? 1 : 0)
        metrics.ready.record(isReady ? 1 : 0)
        metrics.maxStreams.record(configuration.maxConnections)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(registry.internalBufferCapacity())
        registry.emit(into: &bytes)
        return Answer(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: ByteBuffer(bytes: bytes))
    }
}

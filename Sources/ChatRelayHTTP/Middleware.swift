import ChatRelay
import HTTPTypes
import Hummingbird
import Logging

/// Adds `X-Relay-Node` to every response, errors included, so an operator (and a test) can see
/// which node behind the load balancer answered.
struct NodeHeaderMiddleware: RouterMiddleware {
    typealias Context = RelayRequestContext
    let nodeID: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await responseOrError(request, context, next)
        response.headers[.xRelayNode] = nodeID
        return response
    }
}

/// Turns every error into the spec's JSON error body: ours as they are, Hummingbird's own
/// (unknown path, body too large) with a code for their status, a known path asked with another
/// method as `405` with `Allow`, anything else as 500.
struct JSONErrorMiddleware: RouterMiddleware {
    typealias Context = RelayRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as HTTPError {
            if error.status == .notFound, let allow = RelayNode.allowedMethods(onPath: request.uri.path) {
                throw APIError.methodNotAllowed(request.method.rawValue, allow: allow)
            }
            throw APIError(error.status, code: APIError.code(for: error.status), message: error.body ?? error.status.reasonPhrase)
        } catch let error as any HTTPResponseError {
            throw APIError(error.status, code: APIError.code(for: error.status), message: error.status.reasonPhrase)
        } catch {
            logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            throw APIError(.internalServerError, code: "internal", message: "The node failed to handle the request; see its log.")
        }
    }
}

/// CORS for the origins given with `--allow-origin` (or `*`): answers preflights and adds the
/// headers a browser on such an origin needs. Without `--allow-origin` it is not installed at all.
struct CORSPolicyMiddleware: RouterMiddleware {
    typealias Context = RelayRequestContext
    let allowOrigins: Set<String>
    let allowAny: Bool

    init(allowOrigins: [String]) {
        self.allowOrigins = Set(allowOrigins)
        self.allowAny = allowOrigins.contains("*")
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, or nil if it is not allowed.
    func allowedOrigin(_ origin: String) -> String? {
        if allowAny { return "*" }
        return allowOrigins.contains(origin) ? origin : nil
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin], let allowed = allowedOrigin(origin) else {
            return try await next(request, context)
        }
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            var response = Response(status: .noContent)
            response.headers[.accessControlAllowOrigin] = allowed
            response.headers[.accessControlAllowMethods] = "GET, POST, OPTIONS"
            response.headers[.accessControlAllowHeaders] = "Content-Type, Last-Event-ID, Idempotency-Key, Cache-Control"
            response.headers[.accessControlMaxAge] = "600"
            if !allowAny { response.headers[.vary] = "Origin" }
            return response
        }
        var response = try await responseOrError(request, context, next)
        for field in responseHeaders(allowedOrigin: allowed) {
            response.headers[field.name] = field.value
        }
        return response
    }

    /// The CORS headers of a (non-preflight) response to a request from `origin`, or none if the
    /// origin is not allowed. Streams opened below the router add them too.
    func responseHeaders(origin: String) -> HTTPFields {
        guard let allowed = allowedOrigin(origin) else { return [:] }
        return responseHeaders(allowedOrigin: allowed)
    }

    private func responseHeaders(allowedOrigin allowed: String) -> HTTPFields {
        var fields: HTTPFields = [
            .accessControlAllowOrigin: allowed,
            .accessControlExposeHeaders: "X-Relay-Node, Retry-After",
        ]
        if !allowAny { fields[.vary] = "Origin" }
        return fields
    }
}

/// The response of the rest of the chain, with an error that has its own response turned into it,
/// so a middleware can add headers to error responses too.
private func responseOrError(
    _ request: Request, _ context: RelayRequestContext, _ next: (Request, RelayRequestContext) async throws -> Response
) async throws -> Response {
    do {
        return try await next(request, context)
    } catch let error as any HTTPResponseError {
        return try error.response(from: request, context: context)
    }
}

extension HTTPField.Name {
    static let xRelayNode = HTTPField.Name("X-Relay-Node")!
    static let lastEventID = HTTPField.Name("Last-Event-ID")!
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let xAccelBuffering = HTTPField.Name("X-Accel-Buffering")!
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
}

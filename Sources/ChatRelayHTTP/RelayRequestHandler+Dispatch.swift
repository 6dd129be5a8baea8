import ChatRelay
import NIOCore
import NIOHTTP1

extension RelayRequestHandler {
    /// A request arrived in full: answers it now, or starts the node's work for it.
    func dispatch(_ request: Request, body: ByteBuffer?, context: ChannelHandlerContext) {
        let route: RelayRoute
        switch request.route {
        case .success(let matched): route = matched
        case .failure(let error):
            answer(Answer(error), to: request, context: context)
            return
        }
        let peer = context.channel.remoteAddress
        // Who the client is, where that counts (its request bucket, a refusal's charge, its
        // streams): a POST's was read with its head; health checks and the page need none.
        let client =
            request.admitted?.client
            ?? (route.costsReads || (route.takesCredentials && node.access.requiresTokens)
                ? node.clientKey(forwardedFor: request.head.headers["x-forwarded-for"], address: peer) : "")
        if route.costsReads {
            do throws(APIError) {
                try node.checkRequestRate(client)
            } catch {
                answer(Answer(error), to: request, context: context)
                return
            }
        }
        let credentials =
            route.takesCredentials
            ? node.credentials(head: request.head, target: request.target, ticketAllowed: route.opensStream, peer: peer, client: client)
            : nil
        switch route {
        case .live:
            answer(node.liveAnswer(), to: request, context: context)
        case .ready:
            answer(node.readinessAnswer(), to: request, context: context)
        case .metrics:
            answer(node.metricsAnswer(), to: request, context: context)
        case .page:
            answer(node.pageAnswer(), to: request, context: context)
        case .pageAsset(let asset):
            answer(node.pageAssetAnswer(asset), to: request, context: context)
        case .options(let allow):
            answer(options(allow: allow, request: request), to: request, context: context)
        case .history(let room):
            answerLater(request, privately: credentials != nil, context: context) {
                [node, target = request.target] () async throws(APIError) in
                _ = try await node.authorize(credentials, .subscribe, room: room)
                return try await node.historyAnswer(room: room, target: target)
            }
        case .presence(let room):
            answerLater(request, privately: credentials != nil, context: context) { [node] () async throws(APIError) in
                _ = try await node.authorize(credentials, .subscribe, room: room)
                return try await node.presenceAnswer(room: room)
            }
        case .publish:
            // Checked when its head came (`received`), which sets `admitted` or answers an error.
            guard let admitted = request.admitted else {
                answer(Answer(.badRequest), to: request, closing: true, context: context)
                return
            }
            let body = body ?? ByteBuffer()
            answerLater(request, privately: credentials != nil, context: context) { [node] () async throws(APIError) in
                try await node.publish(admitted, body: body, credentials: credentials).answer
            }
        case .typing:
            guard let admitted = request.admitted else {
                answer(Answer(.badRequest), to: request, closing: true, context: context)
                return
            }
            let body = body ?? ByteBuffer()
            answerLater(request, privately: credentials != nil, context: context) { [node] () async throws(APIError) in
                try await node.typing(admitted, body: body, credentials: credentials)
            }
        case .stream(let room):
            openStream(rooms: [room], request: request, credentials: credentials, client: client, context: context)
        case .roomsStream:
            do throws(APIError) {
                let rooms = try node.streamRooms(request.target)
                openStream(rooms: rooms, request: request, credentials: credentials, client: client, context: context)
            } catch {
                answer(Answer(error), to: request, context: context)
            }
        case .ticket:
            answerLater(request, privately: credentials != nil, context: context) { [node] () async throws(APIError) in
                try await node.ticketAnswer(credentials)
            }
        case .startSession:
            answerLater(request, privately: credentials != nil, context: context) { [node] () async throws(APIError) in
                try await node.sessionAnswer(credentials)
            }
        case .endSession:
            answer(node.endSessionAnswer(credentials), to: request, context: context)
        }
    }

    /// Answers `request` with what `work` returns (or throws), once it is done; meanwhile reads are
    /// held and requests pipelined behind wait.
    /// - Parameter privately: the answer depends on who asked (`--auth jwt`): `Cache-Control:
    ///   no-store`, so no cache keeps one user's history or presence for another.
    private func answerLater(
        _ request: Request, privately: Bool, context: ChannelHandlerContext,
        _ work: @escaping @Sendable () async throws(APIError) -> Answer
    ) {
        state = .answering(readSince: [])
        run(
            work, context: context,
            then: { handler, result, context in
                guard case .answering = handler.state else { return }  // closed meanwhile
                var answer: Answer
                switch result {
                case .success(let answered): answer = answered
                case .failure(let error): answer = Answer(error)
                }
                if privately, !answer.headers.contains(where: { $0.0 == "Cache-Control" }) {
                    answer.headers.append(("Cache-Control", "no-store"))
                }
                handler.answer(answer, to: request, context: context)
            })
    }

    /// `OPTIONS`: the path's methods, and a CORS preflight's headers for an allowed origin.
    private func options(allow: String, request: Request) -> Answer {
        var headers = [("Allow", allow)]
        if let origin = request.origin, let cors = node.cors, request.head.headers.contains(name: "access-control-request-method") {
            headers += cors.preflightHeaders(origin: origin)
        }
        return Answer(status: .noContent, contentType: nil, body: ByteBuffer(), headers: headers)
    }

    /// What a POST's head says, for the checks before its body is decoded.
    /// - Parameter typing: a typing signal, which the rate limit counts in a bucket of its own, so
    ///   that typing never uses up what a client may post.
    func publishRequest(room: RoomName, head: HTTPRequestHead, remoteAddress: SocketAddress?, typing: Bool = false) -> PublishRequest {
        let headers = head.headers
        let client = node.clientKey(forwardedFor: headers["x-forwarded-for"], address: remoteAddress)
        return PublishRequest(
            room: room,
            contentType: headers.first(name: "content-type"),
            contentLength: headers.first(name: "content-length").flatMap(Int.init),
            idempotencyKey: headers.first(name: "idempotency-key"),
            clientKey: typing ? "typing " + client : client, client: client)
    }
}

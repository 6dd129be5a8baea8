import Hummingbird
import NIOCore

extension RelayNode {
    /// `GET /`: the chat page, one self-contained HTML document compiled into the binary.
    func addPageRoute(to router: Router<RelayRequestContext>) {
        let page = ByteBuffer(string: ChatPage.html)
        router.get("/") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                body: ResponseBody(byteBuffer: page)
            )
        }
    }
}

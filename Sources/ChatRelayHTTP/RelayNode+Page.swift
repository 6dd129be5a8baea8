import NIOCore

extension RelayNode {
    /// `GET /`: the chat page, one self-contained HTML document compiled into the binary.
    func pageAnswer() -> Answer {
        Answer(status: .ok, contentType: "text/html; charset=utf-8", body: Self.page, headers: [("Cache-Control", "no-cache")])
    }

    private static let page = ByteBuffer(string: ChatPage.html)
}

import NIOCore

extension RelayNode {
    /// `GET /`: the chat page, one self-contained HTML document compiled into the binary.
    func pageAnswer() -> Answer {
        Answer(status: .ok, contentType: "text/html; charset=utf-8", body: page, headers: [("Cache-Control", "no-cache")])
    }
}

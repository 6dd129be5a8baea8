import Foundation
import NIOCore

extension RelayNode {
    /// `GET /`: the chat page, compiled into the binary, with the headers that keep it to itself.
    func pageAnswer() -> Answer {
        Answer(status: .ok, contentType: "text/html; charset=utf-8", body: page, headers: pageHeaders)
    }

    /// `GET /app.js`, `GET /app.css`: the page's script and style.
    func pageAssetAnswer(_ asset: PageAsset) -> Answer {
        switch asset {
        case .script:
            Answer(
                status: .ok, contentType: "text/javascript; charset=utf-8", body: Self.pageScript, headers: [("Cache-Control", "no-cache")])
        case .style:
            Answer(status: .ok, contentType: "text/css; charset=utf-8", body: Self.pageStyle, headers: [("Cache-Control", "no-cache")])
        }
    }

    static let pageScript = ByteBuffer(string: ChatPage.script)
    static let pageStyle = ByteBuffer(string: ChatPage.style)

    /// The page's own headers: a Content-Security-Policy that runs only the node's own script
    /// and style (nothing inline, nothing from elsewhere), talks only to the node (and to the
    /// operator's token endpoint, `--page-token-url`), and lets no other site frame it; no
    /// referrer (the page's URL may name rooms); revalidated on each load.
    static func pageHeaders(tokenURL: String?) -> [(String, String)] {
        var connect = "'self'"
        if let tokenURL, let url = URL(string: tokenURL), let scheme = url.scheme, let host = url.host {
            connect += " \(scheme)://\(host)" + (url.port.map { ":\($0)" } ?? "")
        }
        let policy =
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src \(connect); img-src 'self'; "
            + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        return [
            ("Content-Security-Policy", policy), ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY"),
            ("Cache-Control", "no-cache"),
        ]
    }
}

import Foundation

/// The chat page served at `GET /`, with its script (`GET /app.js`, `ChatPage+Script.swift`) and
/// style (`GET /app.css`, `ChatPage+Style.swift`), all compiled into the binary, so a node is a
/// single file. Nothing is inline: the page's Content-Security-Policy runs only the node's own
/// script (`RelayNode.pageHeaders`). User text is only ever set with `textContent`, never parsed
/// as HTML.
enum ChatPage {
    /// The page, naming `tokenURL` (HTML-escaped) when the operator gave one.
    static func html(tokenURL: String?) -> String {
        guard let tokenURL else { return template.replacingOccurrences(of: "<!--token-url-->", with: "") }
        var escaped = ""
        for character in tokenURL {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return template.replacingOccurrences(of: "<!--token-url-->", with: "<meta name=\"chat-relay-token-url\" content=\"\(escaped)\">")
    }

    private static let template = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <!--token-url-->
        <title>chat-relay</title>
        <link rel="stylesheet" href="app.css">
        </head>
        <body>
        <header>
          <h1>chat-relay</h1>
          <label>Name <input id="name" maxlength="32" autocomplete="nickname" placeholder="your name"></label>
          <label>Room <input id="room" maxlength="64" pattern="[A-Za-z0-9_\-]{1,64}" value="lobby"></label>
          <label>Token <input id="token" type="password" autocomplete="off" placeholder="if the node asks for one"></label>
          <button id="join" type="button" title="Follow this room too, and open it">Join</button>
          <span id="status" class="connecting">connecting</span>
          <span id="who"></span>
        </header>
        <p id="link-sign-in" role="alertdialog" aria-labelledby="link-who"><span id="link-who"></span>
          <button id="link-accept" type="button">Sign in</button> <button id="link-ignore" type="button">Ignore</button></p>
        <p id="notice" role="status"></p>
        <p id="error" role="alert"></p>
        <main>
          <nav id="rooms" aria-label="Rooms"></nav>
          <ul id="messages" aria-live="polite"></ul>
          <aside id="online" aria-label="Who is here"><h2 id="online-count"></h2><ul id="members"></ul></aside>
        </main>
        <p id="typing" aria-live="polite"></p>
        <form id="composer">
          <textarea id="text" placeholder="Message (Enter to send, Shift+Enter for a new line)" aria-label="Message"></textarea>
          <button id="send" type="submit">Send</button>
        </form>
        <script src="app.js"></script>
        </body>
        </html>
        """#
}

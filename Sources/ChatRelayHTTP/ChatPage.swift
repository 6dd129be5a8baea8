import Foundation

/// The chat page served at `GET /`: one self-contained document (no external assets), so a node
/// is a single binary. User text is only ever set with `textContent`, never parsed as HTML.
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
        <style>
          :root { --fg:#1d2330; --muted:#6b7280; --line:#e5e7eb; --accent:#2563eb; --bad:#b91c1c; --ok:#15803d; --warn:#b45309; }
          * { box-sizing: border-box; }
          html, body { height: 100%; margin: 0; }
          body { font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); display: flex; flex-direction: column; }
          header { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; padding: .6rem .8rem; border-bottom: 1px solid var(--line); }
          header h1 { font-size: 1rem; margin: 0 .5rem 0 0; }
          header label { display: flex; gap: .3rem; align-items: center; color: var(--muted); }
          input, textarea, button { font: inherit; padding: .4rem .5rem; border: 1px solid var(--line); border-radius: .4rem; }
          input { width: 9rem; }
          button { background: var(--accent); color: white; border-color: var(--accent); cursor: pointer; }
          button:disabled { opacity: .5; cursor: default; }
          #who { font-size: .85rem; color: #555; }
          #status { margin-left: auto; font-size: .85rem; padding: .15rem .5rem; border-radius: 1rem; background: #f3f4f6; }
          #status.connected { color: var(--ok); } #status.reconnecting, #status.connecting { color: var(--warn); } #status.offline, #status.disconnected { color: var(--bad); }
          #notice, #error { margin: 0; padding: .4rem .8rem; display: none; }
          #notice { background: #fef3c7; } #error { background: #fee2e2; color: var(--bad); }
          #notice.shown, #error.shown { display: block; }
          #messages { flex: 1; overflow-y: auto; list-style: none; margin: 0; padding: .5rem .8rem; }
          #messages li { padding: .25rem 0; border-bottom: 1px solid #f3f4f6; }
          #messages .user { font-weight: 600; margin-right: .4rem; }
          #messages .time { color: var(--muted); font-size: .75rem; margin-left: .4rem; }
          #messages .text { white-space: pre-wrap; overflow-wrap: anywhere; }
          form#composer { display: flex; gap: .5rem; padding: .6rem .8rem; border-top: 1px solid var(--line); }
          #text { flex: 1; resize: none; height: 2.6rem; }
          @media (max-width: 480px) { input { width: 7rem; } header h1 { width: 100%; } }
        </style>
        </head>
        <body>
        <header>
          <h1>chat-relay</h1>
          <label>Name <input id="name" maxlength="32" autocomplete="nickname" placeholder="your name"></label>
          <label>Room <input id="room" maxlength="64" pattern="[A-Za-z0-9_\-]{1,64}" value="lobby"></label>
          <label>Token <input id="token" type="password" autocomplete="off" placeholder="if the node asks for one"></label>
          <button id="join" type="button">Join</button>
          <span id="status" class="connecting">connecting</span>
          <span id="who"></span>
        </header>
        <p id="notice" role="status"></p>
        <p id="error" role="alert"></p>
        <ul id="messages" aria-live="polite"></ul>
        <form id="composer">
          <textarea id="text" placeholder="Message (Enter to send, Shift+Enter for a new line)" aria-label="Message"></textarea>
          <button id="send" type="submit">Send</button>
        </form>
        <script>
        "use strict";
        const $ = (id) => document.getElementById(id);
        const ROOM_RULE = /^[A-Za-z0-9_-]{1,64}$/;
        let room = null, source = null, lastId = null, seen = new Set(), reconnectTimer = null, attempt = 0;
        // A token (--auth jwt), from the field or the URL's #token= (a fragment never reaches a server or its logs);
        // kept for this tab only. It goes in an Authorization header, never in a URL: a stream opens with a
        // single-use ticket bought with it.
        function token() { return $("token").value.trim(); }
        function authHeaders() { return token() ? { Authorization: "Bearer " + token() } : {}; }
        // The token's claims, read for display only (the node verifies; the page cannot and need not).
        function claims() {
          try { return JSON.parse(atob(token().split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))); } catch (err) { return null; }
        }
        let expiryTimer = null;
        // The operator's endpoint for a fresh token (--page-token-url), if the node names one.
        const TOKEN_URL = (document.querySelector('meta[name="chat-relay-token-url"]') || {}).content || "";
        // Gets a fresh token from the operator's app, which knows the user by its own session (cookies).
        async function renewToken() {
          if (!TOKEN_URL) return false;
          try {
            const response = await fetch(TOKEN_URL, { credentials: "include", cache: "no-store" });
            if (!response.ok) return false;
            const text = (await response.text()).trim();
            let fresh = text;
            try { const body = JSON.parse(text); fresh = body.token || body.access_token || ""; } catch (err) {}
            if (!fresh) return false;
            $("token").value = fresh;
            sessionStorage.setItem("chat-relay.token", fresh);
            showIdentity();
            return true;
          } catch (err) { return false; }
        }
        // Shows who the token says you are; a minute before it expires, asks for a new one.
        function showIdentity() {
          const c = token() ? claims() : null;
          $("who").textContent = c && c.sub ? "signed in as " + (c.name || c.sub) : "";
          $("name").disabled = !!(c && c.sub);
          if (c && c.sub) $("name").value = c.name || c.sub;
          clearTimeout(expiryTimer);
          if (c && c.exp) {
            const left = c.exp * 1000 - Date.now();
            // Renewed a minute before it expires (a fifth of its life, for short ones); the stream keeps its
            // ticket until the node ends it at the old token's expiry, then reconnects with the new one.
            if (TOKEN_URL) expiryTimer = setTimeout(renewToken, Math.max(0, left - Math.min(60000, left / 5)));
            else expiryTimer = setTimeout(() => showNotice("Your token expires in a minute: paste a new one in Token to stay connected."), Math.max(0, left - 60000));
          }
        }

        function setStatus(state) { const s = $("status"); s.textContent = state; s.className = state; }
        function showError(text) { const e = $("error"); e.textContent = text || ""; e.classList.toggle("shown", !!text); }
        function showNotice(text) { const n = $("notice"); n.textContent = text || ""; n.classList.toggle("shown", !!text); }
        function newer(a, b) { // message ids are "<ms>-<seq>", compared numerically
          if (b === null) return true;
          const [am, as] = a.split("-").map(BigInt), [bm, bs] = b.split("-").map(BigInt);
          return am !== bm ? am > bm : as > bs;
        }

        // advance: the message came from history or the stream, so everything before it was received too;
        // our own POST's answer does not say that, so it must not move the resume point.
        function render(message, advance = true) {
          if (message.room !== room) return;
          if (advance && newer(message.id, lastId)) lastId = message.id;
          if (seen.has(message.id)) return;
          seen.add(message.id);
          const list = $("messages");
          const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
          const li = document.createElement("li");
          li.dataset.id = message.id;
          const user = document.createElement("span"); user.className = "user"; user.textContent = message.user;
          const text = document.createElement("span"); text.className = "text"; text.textContent = message.text;
          const time = document.createElement("span"); time.className = "time";
          time.textContent = new Date(message.time).toLocaleTimeString(); time.title = message.time;
          li.append(user, text, time);
          // Keep id order even when our own message (shown from the POST answer) overtook an earlier one.
          let after = list.lastElementChild;
          while (after && newer(after.dataset.id, message.id)) after = after.previousElementSibling;
          if (after) after.after(li); else list.prepend(li);
          if (stick) list.scrollTop = list.scrollHeight;
        }

        async function join() {
          const wanted = $("room").value.trim() || "lobby";
          if (!ROOM_RULE.test(wanted)) { showError("A room name is 1 to 64 letters, digits, '_' or '-'."); return; }
          room = wanted; lastId = null; seen = new Set(); attempt = 0;
          localStorage.setItem("chat-relay.room", room);
          history.replaceState(null, "", "?room=" + encodeURIComponent(room));
          $("messages").replaceChildren(); showNotice(""); showError("");
          if (source) { source.close(); source = null; }
          clearTimeout(reconnectTimer);
          setStatus("connecting");
          try {
            const response = await fetch("rooms/" + room + "/messages?limit=100", { cache: "no-store", headers: authHeaders() });
            // Refused: a stream would be too (history follows the same grant).
            if (response.status === 401 || response.status === 403) { setStatus("disconnected"); showError(await refusal(response)); return; }
            if (!response.ok) throw new Error("history: HTTP " + response.status);
            const body = await response.json();
            body.messages.forEach((m) => render(m));
          } catch (err) {
            showError("Could not load the room's history (" + err.message + "); live messages still arrive.");
          }
          connect();
        }

        // The error's message, for a 401 or 403.
        async function refusal(response) {
          let detail = {};
          try { detail = await response.json(); } catch (err) {}
          return (response.status === 401 ? "Access needs a valid token: " : "Not allowed: ") + (detail.message || "HTTP " + response.status);
        }

        async function connect(renewed = false) {
          if (source) source.close();
          source = null;
          // With no message yet, resume after 0-0: whatever arrives between the history load and the stream is replayed.
          let url = "rooms/" + room + "/events?lastEventId=" + encodeURIComponent(lastId || "0-0");
          if (token()) {
            try {
              const response = await fetch("auth/tickets", { method: "POST", headers: authHeaders() });
              if (response.status === 401 && !renewed && await renewToken()) { connect(true); return; }
              if (response.status === 401 || response.status === 403) { setStatus("disconnected"); showError(await refusal(response)); return; }
              if (!response.ok) throw new Error("HTTP " + response.status);
              url += "&ticket=" + encodeURIComponent((await response.json()).ticket);
            } catch (err) { retryLater(); return; }
          }
          const stream = new EventSource(url);
          source = stream;
          stream.onopen = () => { if (source === stream) { attempt = 0; setStatus("connected"); showError(""); } };
          stream.addEventListener("message", (event) => {
            try { render(JSON.parse(event.data)); } catch (err) { console.warn("bad event", err); }
          });
          stream.addEventListener("reset", (event) => {
            let oldest = "";
            try { oldest = JSON.parse(event.data).oldest || ""; } catch (err) {}
            showNotice("Some messages are no longer in this room's history and were missed" + (oldest ? " (the oldest kept is " + oldest + ")" : "") + ". Reload to see the room as it is now.");
          });
          // The token the stream was opened with expired: a new ticket (or the refusal, if the token is the old one).
          stream.addEventListener("token-expired", async () => {
            if (source !== stream) return;
            stream.close();
            source = null;
            await renewToken();
            connect();
          });
          stream.onerror = () => {
            if (source !== stream) return;
            // A ticket is good once: an EventSource retrying its URL would be refused, so a ticketed stream reconnects here.
            if (stream.readyState === EventSource.CONNECTING && !token()) { setStatus("reconnecting"); return; }
            // Closed for good (e.g. 503 from a full or draining node): reconnect ourselves, with backoff.
            stream.close();
            retryLater();
          };
        }

        function retryLater() {
          setStatus("reconnecting");
          attempt += 1;
          const delay = Math.min(10000, 500 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random() / 2);
          clearTimeout(reconnectTimer);
          reconnectTimer = setTimeout(connect, delay);
        }

        async function send(event) {
          event.preventDefault();
          const user = $("name").value.trim();
          const text = $("text").value;
          if (!user && !token()) { showError("Pick a name first."); $("name").focus(); return; }
          if (!text.trim()) return;
          localStorage.setItem("chat-relay.name", user);
          $("send").disabled = true;
          const key = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).slice(0, 64);
          try {
            let response;
            for (let tries = 0; ; tries++) {
              try {
                response = await fetch("rooms/" + room + "/messages", {
                  method: "POST",
                  headers: { "Content-Type": "application/json", "Idempotency-Key": key, ...authHeaders() },
                  body: JSON.stringify({ user, text }),
                });
              } catch (err) { // network error: the same key makes the retry safe
                if (tries < 2) { await new Promise((r) => setTimeout(r, 500)); continue; }
                throw err;
              }
              break;
            }
            if (response.ok) {
              $("text").value = "";
              showError("");
              render(await response.json(), false);
              return;
            }
            let detail = {};
            try { detail = await response.json(); } catch (err) {}
            const wait = response.headers.get("Retry-After");
            if (response.status === 429) showError("You are sending too fast; wait " + (wait || "a few") + " s and try again.");
            else if (response.status === 413) showError("That message is too large for this server.");
            else if (response.status === 401) showError("Access needs a valid token: " + (detail.message || "HTTP 401"));
            else if (response.status === 403) showError("Not allowed: " + (detail.message || "HTTP 403"));
            else if (response.status === 503) showError("The server cannot take messages right now; your message was not sent. Try again in " + (wait || "a few") + " s.");
            else showError(detail.message || ("The message was refused (HTTP " + response.status + ")."));
          } catch (err) {
            showError("Could not reach the server; your message was not sent.");
          } finally {
            $("send").disabled = false;
            $("text").focus();
          }
        }

        $("composer").addEventListener("submit", send);
        $("text").addEventListener("keydown", (event) => {
          if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); $("composer").requestSubmit(); }
        });
        $("join").addEventListener("click", join);
        $("room").addEventListener("keydown", (event) => { if (event.key === "Enter") join(); });
        $("name").value = localStorage.getItem("chat-relay.name") || "";
        const fragmentToken = new URLSearchParams(location.hash.slice(1)).get("token");
        if (fragmentToken) { sessionStorage.setItem("chat-relay.token", fragmentToken); history.replaceState(null, "", location.pathname + location.search); }
        $("token").value = sessionStorage.getItem("chat-relay.token") || "";
        $("token").addEventListener("change", () => { sessionStorage.setItem("chat-relay.token", token()); showIdentity(); join(); });
        showIdentity();
        $("room").value = new URLSearchParams(location.search).get("room") || localStorage.getItem("chat-relay.room") || "lobby";
        // With --page-token-url and no token yet: one from the operator's app first.
        (async () => { if (!token() && TOKEN_URL) await renewToken(); join(); })();
        </script>
        </body>
        </html>
        """#
}

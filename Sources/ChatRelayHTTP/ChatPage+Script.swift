extension ChatPage {
    /// `GET /app.js`: the page's script. It reads the operator's token endpoint from the page's
    /// `chat-relay-token-url` meta element, so it is the same for every node.
    static let script = #"""
        "use strict";
        const $ = (id) => document.getElementById(id);
        const ROOM_RULE = /^[A-Za-z0-9_-]{1,64}$/;
        // The rooms followed, all on one stream (GET events?room=a&room=b…), and the one shown.
        // Per room: the newest id received (where the stream resumes), its messages, unread count,
        // who is here (from presence events) and who is typing.
        let rooms = [], room = null, state = {}, source = null, reconnectTimer = null, attempt = 0, lastTyping = 0;
        function roomState(name) {
          return state[name] || (state[name] = { lastId: null, seen: new Set(), messages: [], unread: 0, members: new Map(), count: 0, typing: new Map() });
        }
        // A token (--auth jwt), from the field or the URL's #token= (a fragment never reaches a server or its logs);
        // kept for this tab only. It goes in an Authorization header, never in a URL: a stream opens with a
        // single-use ticket bought with it.
        function token() { return $("token").value.trim(); }
        function authHeaders() { return token() ? { Authorization: "Bearer " + token() } : {}; }
        // The token's claims, read for display only (the node verifies; the page cannot and need not).
        function claims(of = token()) {
          try { return JSON.parse(atob(of.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))); } catch (err) { return null; }
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
        function me() { const c = token() ? claims() : null; return c && c.sub ? c.sub : $("name").value.trim(); }

        function setStatus(status) { const s = $("status"); s.textContent = status; s.className = status; }
        function showError(text) { const e = $("error"); e.textContent = text || ""; e.classList.toggle("shown", !!text); }
        function showNotice(text) { const n = $("notice"); n.textContent = text || ""; n.classList.toggle("shown", !!text); }
        function newer(a, b) { // message ids are "<ms>-<seq>", compared numerically
          if (b === null) return true;
          const [am, as] = a.split("-").map(BigInt), [bm, bs] = b.split("-").map(BigInt);
          return am !== bm ? am > bm : as > bs;
        }

        // The stream's position in every room, as the node writes it in its ids (docs/API.md, "One stream,
        // many rooms"): the page makes it from its own per-room ids, so it can resume any list of rooms.
        function position(names) {
          if (names.length === 1) return roomState(names[0]).lastId || "0-0";
          let check = 0x811c9dc5;
          const utf8 = new TextEncoder();
          for (const name of names) {
            for (const byte of utf8.encode(name)) check = Math.imul(check ^ byte, 0x01000193) >>> 0;
            check = Math.imul(check ^ 10, 0x01000193) >>> 0;
          }
          const ids = names.map((name) => (roomState(name).lastId || "0-0").split("-").map(Number));
          const base = Math.max(...ids.map(([ms]) => ms));
          const bytes = [1, check >>> 24, (check >>> 16) & 255, (check >>> 8) & 255, check & 255];
          const varint = (value) => { while (value >= 128) { bytes.push((value % 128) | 128); value = Math.floor(value / 128); } bytes.push(value); };
          varint(names.length); varint(base);
          for (const [ms, seq] of ids) { if (ms === 0 && seq === 0) bytes.push(0); else { varint(base - ms + 1); varint(seq); } }
          return "~" + btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
        }

        function showRooms() {
          const nav = $("rooms");
          nav.replaceChildren(...rooms.map((name) => {
            const button = document.createElement("button");
            button.type = "button"; button.dataset.room = name; button.className = name === room ? "open" : "";
            const label = document.createElement("span"); label.textContent = name;
            const unread = document.createElement("span"); unread.className = "unread";
            unread.textContent = roomState(name).unread ? String(roomState(name).unread) : "";
            button.append(label, unread);
            button.addEventListener("click", () => open(name));
            return button;
          }));
        }

        // Who is here in the open room, from its presence events.
        function showPresence() {
          const s = roomState(room);
          $("online-count").textContent = s.count === 1 ? "1 here" : s.count + " here";
          const list = $("members");
          list.replaceChildren(...[...s.members.values()].map((member) => {
            const li = document.createElement("li");
            li.textContent = member.name || member.user;
            li.dataset.user = member.user;
            if (!member.verified) li.className = "claimed";
            return li;
          }));
        }

        function showTyping() {
          const now = Date.now(), s = roomState(room);
          const names = [...s.typing.entries()].filter(([user, until]) => until > now && user !== me()).map(([user]) => user);
          $("typing").textContent = names.length === 0 ? "" : names.join(", ") + (names.length === 1 ? " is typing…" : " are typing…");
        }
        setInterval(showTyping, 1000);

        function item(message) {
          const li = document.createElement("li");
          li.dataset.id = message.id;
          const user = document.createElement("span"); user.className = "user"; user.textContent = message.user;
          const text = document.createElement("span"); text.className = "text"; text.textContent = message.text;
          const time = document.createElement("span"); time.className = "time";
          time.textContent = new Date(message.time).toLocaleTimeString(); time.title = message.time;
          li.append(user, text, time);
          return li;
        }

        // advance: the message came from history or the stream, so everything before it in its room was received
        // too; our own POST's answer does not say that, so it must not move the resume point.
        function render(message, advance = true) {
          if (!state[message.room]) return;
          const s = roomState(message.room);
          if (advance && newer(message.id, s.lastId)) s.lastId = message.id;
          // Who sent a message is no longer typing it.
          if (s.typing.delete(message.user) && message.room === room) showTyping();
          if (s.seen.has(message.id)) return;
          s.seen.add(message.id);
          // Kept in id order even when our own message (shown from the POST answer) overtook an earlier one.
          let at = s.messages.length;
          while (at > 0 && newer(s.messages[at - 1].id, message.id)) at--;
          s.messages.splice(at, 0, message);
          if (message.room !== room) { s.unread++; showRooms(); return; }
          const list = $("messages");
          const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
          const li = item(message);
          if (at === 0) list.prepend(li); else list.children[at - 1].after(li);
          if (stick) list.scrollTop = list.scrollHeight;
        }

        // Shows a followed room.
        function open(name) {
          room = name;
          const s = roomState(name);
          s.unread = 0;
          history.replaceState(null, "", "?" + rooms.map((r) => "room=" + encodeURIComponent(r)).join("&") + "&open=" + encodeURIComponent(room));
          $("messages").replaceChildren(...s.messages.map(item));
          $("messages").scrollTop = $("messages").scrollHeight;
          showRooms(); showPresence(); showTyping();
        }

        // Follows a room too (if it is not followed yet) and opens it: its history, then one stream of every room.
        async function join(wanted = $("room").value.trim() || "lobby") {
          if (!ROOM_RULE.test(wanted)) { showError("A room name is 1 to 64 letters, digits, '_' or '-'."); return; }
          showError("");
          if (rooms.includes(wanted)) { open(wanted); return; }
          if (rooms.length >= 100) { showError("A page follows at most 100 rooms."); return; }
          if (!(await loadHistory(wanted))) return;
          rooms.push(wanted);
          localStorage.setItem("chat-relay.rooms", JSON.stringify(rooms));
          open(wanted);
          connect();
        }

        // Loads a room's recent history; false when the node refuses the room (its stream would be refused too).
        async function loadHistory(name) {
          const s = roomState(name);
          try {
            const response = await fetch("rooms/" + name + "/messages?limit=100", { cache: "no-store", headers: authHeaders() });
            if (response.status === 401 || response.status === 403) {
              delete state[name];
              showError(await refusal(response));
              return false;
            }
            if (!response.ok) throw new Error("history: HTTP " + response.status);
            (await response.json()).messages.forEach((m) => render(m));
            s.unread = 0;
          } catch (err) {
            showError("Could not load the history of " + name + " (" + err.message + "); live messages still arrive.");
          }
          return true;
        }

        // The error's message, for a 401 or 403.
        async function refusal(response) {
          let detail = {};
          try { detail = await response.json(); } catch (err) {}
          return (response.status === 401 ? "Access needs a valid token: " : "Not allowed: ") + (detail.message || "HTTP " + response.status);
        }

        // One stream of every followed room, resuming each where the page has it.
        async function connect(renewed = false) {
          if (source) source.close();
          source = null;
          clearTimeout(reconnectTimer);
          if (rooms.length === 0) return;
          setStatus(attempt ? "reconnecting" : "connecting");
          let url = "events?" + rooms.map((r) => "room=" + encodeURIComponent(r)).join("&") + "&presence=1&lastEventId=" + encodeURIComponent(position(rooms));
          if (token()) {
            try {
              const response = await fetch("auth/tickets", { method: "POST", headers: authHeaders() });
              if (response.status === 401 && !renewed && await renewToken()) { connect(true); return; }
              if (response.status === 401 || response.status === 403) { setStatus("disconnected"); showError(await refusal(response)); return; }
              if (!response.ok) throw new Error("HTTP " + response.status);
              url += "&ticket=" + encodeURIComponent((await response.json()).ticket);
            } catch (err) { retryLater(); return; }
          } else if ($("name").value.trim()) {
            url += "&user=" + encodeURIComponent($("name").value.trim());
          }
          const stream = new EventSource(url);
          source = stream;
          stream.onopen = () => { if (source === stream) { attempt = 0; setStatus("connected"); showError(""); } };
          stream.addEventListener("message", (event) => {
            try { render(JSON.parse(event.data)); } catch (err) { console.warn("bad event", err); }
          });
          stream.addEventListener("reset", (event) => {
            let data = {};
            try { data = JSON.parse(event.data); } catch (err) {}
            const where = data.room || rooms[0];
            showNotice("Some messages of " + where + " are no longer in its history and were missed" + (data.oldest ? " (the oldest kept is " + data.oldest + ")" : "") + ". Reload to see the room as it is now.");
          });
          stream.addEventListener("presence", (event) => {
            let data = {};
            try { data = JSON.parse(event.data); } catch (err) { return; }
            if (!state[data.room]) return;
            const s = roomState(data.room);
            s.count = data.count;
            if (data.members) s.members = new Map(data.members.map((m) => [m.user, m]));
            for (const m of data.joined || []) s.members.set(m.user, m);
            for (const user of data.left || []) s.members.delete(user);
            if (data.count > s.members.size && !data.members && !data.joined) s.members = new Map(); // over the cap: counts only
            if (data.room === room) showPresence();
          });
          stream.addEventListener("typing", (event) => {
            let data = {};
            try { data = JSON.parse(event.data); } catch (err) { return; }
            if (!state[data.room]) return;
            roomState(data.room).typing.set(data.user, Date.now() + 5000);
            if (data.room === room) showTyping();
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
            // A ticket is good once, and the page's own position covers every room: it reconnects itself,
            // with backoff (also after a 503 from a full or draining node).
            stream.close();
            retryLater();
          };
        }

        function retryLater() {
          setStatus("reconnecting");
          attempt += 1;
          const delay = Math.min(5000, 250 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random() / 2);
          clearTimeout(reconnectTimer);
          reconnectTimer = setTimeout(connect, delay);
        }

        // Tells the open room that we are typing: at most every 3 seconds while the text changes.
        async function typing() {
          const user = $("name").value.trim();
          if (!room || (!user && !token()) || !$("text").value.trim() || Date.now() - lastTyping < 3000) return;
          lastTyping = Date.now();
          try {
            await fetch("rooms/" + room + "/typing", {
              method: "POST", headers: { "Content-Type": "application/json", ...authHeaders() }, body: JSON.stringify({ user }),
            });
          } catch (err) {}
        }

        async function send(event) {
          event.preventDefault();
          const user = $("name").value.trim();
          const text = $("text").value;
          if (!user && !token()) { showError("Pick a name first."); $("name").focus(); return; }
          if (!text.trim() || !room) return;
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
              lastTyping = 0;
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

        // Starts over with `names` followed (a new token may grant other rooms).
        async function follow(names, opened) {
          if (source) { source.close(); source = null; }
          rooms = []; state = {}; room = null; attempt = 0;
          showNotice(""); showError("");
          $("messages").replaceChildren();
          for (const name of names) {
            if (!ROOM_RULE.test(name) || rooms.includes(name) || rooms.length >= 100) continue;
            if (await loadHistory(name)) rooms.push(name);
          }
          if (rooms.length === 0) { setStatus("disconnected"); showRooms(); return; }
          const shown = rooms.includes(opened) ? opened : rooms[0];
          $("room").value = shown;
          open(shown);
          connect();
        }

        $("composer").addEventListener("submit", send);
        $("text").addEventListener("keydown", (event) => {
          if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); $("composer").requestSubmit(); }
        });
        $("text").addEventListener("input", typing);
        $("join").addEventListener("click", () => join());
        $("room").addEventListener("keydown", (event) => { if (event.key === "Enter") join(); });
        // Present under the new name: the stream opens again (resuming every room where it was).
        $("name").addEventListener("change", () => { localStorage.setItem("chat-relay.name", $("name").value.trim()); if (rooms.length && !token()) connect(); });
        $("name").value = localStorage.getItem("chat-relay.name") || "";
        // A token a link carries (#token=) is not used until the user says it is theirs: a link from
        // someone else would sign them in as whoever it names, and what they post would be that user's.
        const fragmentToken = new URLSearchParams(location.hash.slice(1)).get("token");
        if (fragmentToken) history.replaceState(null, "", location.pathname + location.search);
        $("token").value = sessionStorage.getItem("chat-relay.token") || "";
        $("token").addEventListener("change", () => { sessionStorage.setItem("chat-relay.token", token()); showIdentity(); follow(rooms.length ? rooms : ["lobby"], room); });
        showIdentity();
        const query = new URLSearchParams(location.search);
        let saved = [];
        try { saved = JSON.parse(localStorage.getItem("chat-relay.rooms") || "[]"); } catch (err) {}
        const initial = query.getAll("room").length ? query.getAll("room") : (saved.length ? saved : ["lobby"]);
        // With --page-token-url and no token yet: one from the operator's app first.
        const start = () => { (async () => { if (!token() && TOKEN_URL) await renewToken(); follow(initial, query.get("open") || initial[0]); })(); };
        if (fragmentToken) {
          const c = claims(fragmentToken);
          const who = c && c.sub ? (c.name && c.name !== c.sub ? c.name + " (" + c.sub + ")" : c.sub) : "a user this page cannot tell";
          $("link-who").textContent = "This link signs you in as " + who + ". Sign in as " + (c && (c.name || c.sub) || "them") + "?";
          $("link-sign-in").classList.add("shown");
          const decide = (accept) => {
            $("link-sign-in").classList.remove("shown");
            if (accept) { $("token").value = fragmentToken; sessionStorage.setItem("chat-relay.token", fragmentToken); showIdentity(); }
            start();
          };
          $("link-accept").addEventListener("click", () => decide(true), { once: true });
          $("link-ignore").addEventListener("click", () => decide(false), { once: true });
        } else {
          start();
        }
        """#
}

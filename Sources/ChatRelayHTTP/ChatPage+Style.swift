extension ChatPage {
    /// `GET /app.css`: the page's style.
    static let style = #"""
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
          #link-sign-in { margin: 0; padding: .4rem .8rem; display: none; background: #dbeafe; }
          #link-sign-in.shown { display: block; }
          main { flex: 1; display: flex; min-height: 0; }
          #rooms { width: 10rem; border-right: 1px solid var(--line); padding: .5rem; overflow-y: auto; display: flex; flex-direction: column; gap: .25rem; }
          #rooms button { display: flex; justify-content: space-between; align-items: center; background: none; color: var(--fg); border: 1px solid transparent; text-align: left; }
          #rooms button.open { border-color: var(--accent); color: var(--accent); }
          #rooms .unread { background: var(--accent); color: white; border-radius: 1rem; padding: 0 .4rem; font-size: .75rem; }
          #rooms .unread:empty { display: none; }
          #online { width: 10rem; border-left: 1px solid var(--line); padding: .5rem; overflow-y: auto; font-size: .9rem; }
          #online h2 { font-size: .85rem; margin: 0 0 .3rem; color: var(--muted); }
          #online ul { list-style: none; margin: 0; padding: 0; }
          #online li.claimed::after { content: " (unverified)"; color: var(--muted); font-size: .75rem; }
          #typing { min-height: 1.2rem; margin: 0; padding: 0 .8rem; font-size: .8rem; color: var(--muted); }
          #messages { flex: 1; overflow-y: auto; list-style: none; margin: 0; padding: .5rem .8rem; }
          #messages li { padding: .25rem 0; border-bottom: 1px solid #f3f4f6; }
          #messages .user { font-weight: 600; margin-right: .4rem; }
          #messages .time { color: var(--muted); font-size: .75rem; margin-left: .4rem; }
          #messages .text { white-space: pre-wrap; overflow-wrap: anywhere; }
          form#composer { display: flex; gap: .5rem; padding: .6rem .8rem; border-top: 1px solid var(--line); }
          #text { flex: 1; resize: none; height: 2.6rem; }
          @media (max-width: 640px) { input { width: 7rem; } header h1 { width: 100%; } #online, #rooms { width: 6rem; } }
        """#
}

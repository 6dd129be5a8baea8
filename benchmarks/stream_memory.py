#!/usr/bin/env python3
"""Memory per idle stream of one chat-relay node, by where on its connection the stream was asked for.

Three ways in, each on a freshly started node (release build, embedded broker):

- first:   the stream is its connection's first request;
- after:   the connection first fetches the room's history, then asks for the stream (a browser
           that loads history and opens its EventSource on the same kept-alive connection);
- haproxy: the same two requests through HAProxy with server keep-alive (its default), so the
           node sees the stream on a connection that already carried a request;
- jwt:     as `first`, on a node with `--auth jwt`, each stream opened with a bearer token (its
           end at the token's expiry is scheduled: a timer per stream).

Memory is the node's proportional set size (PSS) with every stream open and idle, minus the same
before the streams opened (after a warm-up of a few hundred streams opened and closed the same
way), divided by the streams. HAProxy's own memory is not counted: the figure is the node's.

    python3 benchmarks/stream_memory.py --relay .build/release/chat-relay [--streams 3000]
"""

import argparse
import os
import pathlib
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import vs_nchan  # noqa: E402  (free_port, wait_until, port_open, pss_kib, Process)

HAPROXY_CONFIG = """\
global
    maxconn 9000
defaults
    mode http
    option http-no-delay
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout http-keep-alive 30s
frontend chat
    bind 127.0.0.1:{front}
    default_backend relays
backend relays
    server node1 127.0.0.1:{node}
"""


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed before the response head")
        data += chunk
    return data


def read_response(sock):
    """Reads one response with a Content-Length body (the history answer)."""
    data = read_head(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed in the response body")
        body += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"history request answered {head.splitlines()[0]!r}")


def open_stream(port, room, after_history, token=None):
    sock = socket.create_connection(("127.0.0.1", port))
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    if after_history:
        sock.sendall(f"GET /rooms/{room}/messages HTTP/1.1\r\nHost: relay\r\n{authorization}\r\n".encode())
        read_response(sock)
    sock.sendall(f"GET /rooms/{room}/events HTTP/1.1\r\nHost: relay\r\nAccept: text/event-stream\r\n{authorization}\r\n".encode())
    head = read_head(sock)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"stream request answered {head.splitlines()[0]!r}")
    return sock


def post(port, room):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/rooms/{room}/messages", method="POST",
                                     data=b'{"user":"memory","text":"warm-up over"}',
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def node_connections(port):
    """The node's established TCP connections (HAProxy may hold more than one per client)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True).stdout
    return len(out.splitlines())


def measure(relay, mode, streams, warmup, work):
    port = vs_nchan.free_port()
    auth, token = [], None
    if mode == "jwt":
        secret = work / "secret"
        secret.write_bytes(os.urandom(48).hex().encode())
        auth = ["--auth", "jwt", "--jwt-secret-file", str(secret)]
        token = subprocess.run([relay, "token", "--jwt-secret-file", str(secret), "--sub", "memory", "--subscribe", "*",
                                "--ttl", "1h"], check=True, capture_output=True, text=True).stdout.strip()
    node = vs_nchan.Process([relay, "serve", "--host", "127.0.0.1", "--port", str(port), "--node-id", "memory",
                             "--rate-limit", "0", "--no-client-limits", "--max-connections", str(streams + warmup + 100),
                             "--log-level", "warning"] + auth, work / f"node-{mode}.log")
    proxy = None
    try:
        vs_nchan.wait_until(lambda: vs_nchan.port_open(port), 30, "the node")
        target = port
        if mode == "haproxy":
            target = vs_nchan.free_port()
            config = work / "haproxy.cfg"
            config.write_text(HAPROXY_CONFIG.format(front=target, node=port))
            proxy = vs_nchan.Process(["haproxy", "-f", str(config), "-db"], work / "haproxy.log")
            vs_nchan.wait_until(lambda: vs_nchan.port_open(target), 30, "HAProxy")
        after = mode in ("after", "haproxy")
        # Warm-up: the allocator's arenas and NIO's pools reach their working size first.
        for sock in [open_stream(target, f"room-{index % 20}", after, token) for index in range(warmup)]:
            sock.close()
        if proxy:
            # HAProxy notices that a client of a streaming response left only when it next writes to
            # it (in service, the node's heartbeat): one message per room ends the warm-up's streams
            # on the node too, as closing them does directly.
            for index in range(20):
                post(port, f"room-{index}")
            vs_nchan.wait_until(lambda: node_connections(port) == 0, 30, "the warm-up streams to end")
        time.sleep(1.0)
        before = vs_nchan.pss_kib([node.pid])
        connections_before = node_connections(port)
        opened = [open_stream(target, f"room-{index % 20}", after, token) for index in range(streams)]
        time.sleep(2.0)
        during = vs_nchan.pss_kib([node.pid])
        connections = node_connections(port)
        for sock in opened:
            sock.close()
        return {"mode": mode, "streams": streams, "pss_before_kib": before, "pss_open_kib": during,
                "kib_per_stream": round((during - before) / streams, 2), "node_connections_before": connections_before, "node_connections": connections}
    finally:
        if proxy:
            proxy.stop()
        node.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", required=True, help="the chat-relay binary (release build)")
    parser.add_argument("--streams", type=int, default=3000, help="idle streams per measurement")
    parser.add_argument("--warmup", type=int, default=500, help="streams opened and closed before measuring")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per mode, alternating modes")
    parser.add_argument("--modes", default="first,after,haproxy,jwt", help="comma-separated subset")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = pathlib.Path(tempfile.mkdtemp(prefix="stream-memory-"))
    results = {mode: [] for mode in args.modes.split(",")}
    for _ in range(args.rounds):
        for mode in results:
            result = measure(args.relay, mode, args.streams, args.warmup, work)
            results[mode].append(result["kib_per_stream"])
            print(f"{mode}: {result}", file=sys.stderr, flush=True)
    for mode, values in results.items():
        median = sorted(values)[len(values) // 2]
        print(f"{mode:8} KiB per idle stream: {' / '.join(str(v) for v in values)} (median {median})")


if __name__ == "__main__":
    main()

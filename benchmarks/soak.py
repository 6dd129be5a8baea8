#!/usr/bin/env python3
"""A soak run: three chat-relay nodes on one Redis under churn, traffic and abuse for a long time,
their memory and descriptors sampled throughout. Run it through benchmarks/soak.sh.

What runs, all on loopback, for --minutes (default 30):
- churn: --slots connections at a time, each opening a stream on a random node (every fifth after
  another request on its connection, so the router opens it), reading it for 0.2 to 8 s, then
  closing it (every third with a reset), over and over;
- long-lived subscribers (--subscribers) of one room, for the whole run, checked at the end for
  every message of that room, once, in order;
- a publisher: --rate messages a second over keep-alive connections to every node, a quarter to
  the long-lived subscribers' room, the rest to 200 rooms and to rooms of their own (each a new
  room: with --history-ttl they expire during the run);
- abuse every 10 s: half-sent request heads and silent connections, which the nodes must close
  at their request timeout.
Every 10 s: each node's resident memory and open descriptors (/proc), its open streams and
connections (/metrics), and Redis's memory and key count.

Writes docs/benchmarks/soak.json (every sample), docs/benchmarks/soak.svg (memory and descriptors
over time) and docs/benchmarks/soak.md (the section docs/BENCHMARKS.md includes), then renders
docs/BENCHMARKS.md again.
"""

import argparse
import asyncio
import datetime
import json
import os
import pathlib
import random
import socket
import struct
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import vs_nchan  # noqa: E402  (its process, port and machine helpers)


def log(message):
    print(f"soak: {message}", file=sys.stderr, flush=True)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def metrics(port):
    values = {}
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    for line in data.decode(errors="replace").splitlines():
        if line and not line.startswith("#") and " " in line:
            name, value = line.rsplit(" ", 1)
            try:
                values[name] = float(value)
            except ValueError:
                pass
    return values


def redis_info(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "memory"], capture_output=True, text=True).stdout
    memory = next((int(line.split(":")[1]) for line in out.splitlines() if line.startswith("used_memory:")), 0)
    keys = int(subprocess.run(["redis-cli", "-p", str(port), "DBSIZE"], capture_output=True, text=True).stdout.strip() or 0)
    return memory, keys


class Load:
    def __init__(self, ports, args):
        self.ports = ports
        self.args = args
        self.stop = False
        self.streams_opened = 0
        self.stream_failures = 0
        self.posts = 0
        self.post_failures = 0
        self.abusive = 0
        self.abuse_unclosed = 0
        self.main_ids = []          # ids accepted in the long-lived subscribers' room, in order
        self.received = []          # per long-lived subscriber: ids in arrival order

    async def open_stream(self, port, room, after_request):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if after_request:
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: soak\r\n\r\n")
            await writer.drain()
            await asyncio.wait_for(reader.readuntil(b'"ok"}'), 10)
        writer.write(f"GET /rooms/{room}/events HTTP/1.1\r\nHost: soak\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b": chat-relay node"), 10)
        return reader, writer

    async def churn_slot(self, index):
        rng = random.Random(index)
        count = 0
        while not self.stop:
            port = rng.choice(self.ports)
            room = f"churn-{rng.randrange(200)}"
            writer = None
            try:
                reader, writer = await self.open_stream(port, room, after_request=count % 5 == 0)
                self.streams_opened += 1
                until = time.monotonic() + rng.uniform(0.2, 8.0)
                while not self.stop and time.monotonic() < until:
                    try:
                        if not await asyncio.wait_for(reader.read(65536), max(0.01, until - time.monotonic())):
                            break
                    except asyncio.TimeoutError:
                        break
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                self.stream_failures += 1
            finally:
                if writer is not None:
                    if count % 3 == 0:
                        sock = writer.get_extra_info("socket")
                        if sock is not None:
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.close()
            count += 1

    async def long_lived(self, index):
        ids = []
        self.received.append(ids)
        reader, writer = await self.open_stream(self.ports[index % len(self.ports)], "soak-main", after_request=False)
        buffer = b""
        while not self.stop:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 1)
            except asyncio.TimeoutError:
                continue
            if not chunk:
                log(f"long-lived subscriber {index} was disconnected")
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.startswith(b"id: "):
                    ids.append(line[4:].strip().decode())
        writer.close()

    async def publisher(self, index, connections):
        rng = random.Random(1000 + index)
        port = self.ports[index % len(self.ports)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        interval = connections / self.args.rate
        next_at = time.monotonic()
        sequence = 0
        while not self.stop:
            next_at += interval
            await asyncio.sleep(max(0, next_at - time.monotonic()))
            pick = rng.random()
            if pick < 0.25:
                room = "soak-main"
            elif pick < 0.85:
                room = f"churn-{rng.randrange(200)}"
            else:
                room = f"once-{index}-{sequence}"
            sequence += 1
            body = json.dumps({"user": f"p{index}", "text": f"soak {sequence} " + "x" * rng.randrange(200)}).encode()
            request = (f"POST /rooms/{room}/messages HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            try:
                writer.write(request)
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
                answer = await asyncio.wait_for(reader.readexactly(length), 10)
                if not head.startswith(b"HTTP/1.1 201"):
                    self.post_failures += 1
                    continue
                self.posts += 1
                if room == "soak-main":
                    self.main_ids.append(json.loads(answer)["id"])
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, StopIteration, ValueError):
                self.post_failures += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def abuse(self):
        while not self.stop:
            held = []
            for n in range(self.args.abusive):
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", random.choice(self.ports))
                    if n % 2 == 0:
                        writer.write(b"GET /rooms/x/events HTTP/1.1\r\nHost: soak\r\n")
                    held.append((reader, writer))
                    self.abusive += 1
                except OSError:
                    pass
            await asyncio.sleep(10)
            for reader, writer in held:
                # Closed by the node at its request timeout (5 s): the read sees the end at once.
                try:
                    await asyncio.wait_for(reader.read(), 5)
                except (asyncio.TimeoutError, OSError):
                    self.abuse_unclosed += 1
                writer.close()

    async def run(self, seconds, sample):
        tasks = [asyncio.create_task(self.long_lived(i)) for i in range(self.args.subscribers)]
        await asyncio.sleep(1)
        tasks += [asyncio.create_task(self.churn_slot(i)) for i in range(self.args.slots)]
        tasks += [asyncio.create_task(self.publisher(i, 6)) for i in range(6)]
        tasks.append(asyncio.create_task(self.abuse()))
        started = time.monotonic()
        sample(0.0)
        while time.monotonic() - started < seconds:
            await asyncio.sleep(self.args.interval - (time.monotonic() - started) % self.args.interval)
            sample(time.monotonic() - started)
        self.stop = True
        await asyncio.sleep(2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def svg(samples, nodes, path):
    """Resident memory (MiB) and descriptors of each node against minutes, in two panels."""
    width, left, right, top, panel, gap, bottom = 760, 70, 20, 40, 200, 50, 40
    height = top + 2 * panel + gap + bottom
    colors = ["#2a6fdb", "#d9534f", "#3c9a4a"]
    max_t = max(s["t"] for s in samples) / 60 or 1

    def px(minutes):
        return left + (width - left - right) * minutes / max_t

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">Soak: three nodes on Redis under churn, '
             f'traffic and abuse ({max_t:.0f} min)</text>']
    for row, (key, label) in enumerate((("rss_mib", "resident memory, MiB"), ("fds", "open descriptors"))):
        y0 = top + row * (panel + gap)
        values = [s["nodes"][n][key] for s in samples for n in range(nodes)]
        high = max(values) * 1.15 or 1
        step = 10 ** len(str(int(high / 4))) / 10 or 1
        while high / step > 6:
            step *= 2

        def py(value):
            return y0 + panel * (1 - value / high)

        tick = 0.0
        while tick <= high:
            parts.append(f'<line x1="{left}" x2="{width - right}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" stroke="#e5e5e5"/>')
            parts.append(f'<text x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
            tick += step
        parts.append(f'<text x="{left}" y="{y0 - 6}">{label}</text>')
        for n in range(nodes):
            points = " ".join(f'{px(s["t"] / 60):.1f},{py(s["nodes"][n][key]):.1f}' for s in samples)
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colors[n % 3]}" stroke-width="1.8"/>')
        for minute in range(0, int(max_t) + 1, 5 if max_t > 10 else 1):
            parts.append(f'<text x="{px(minute):.1f}" y="{y0 + panel + 16}" text-anchor="middle">{minute}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 8}" text-anchor="middle">minutes</text>')
    # The legend low in the memory panel, under the lines (memory sits near its top).
    legend_top = top + panel - 16 * nodes - 6
    for n in range(nodes):
        parts.append(f'<line x1="{width - 150}" x2="{width - 125}" y1="{legend_top + 16 * n}" y2="{legend_top + 16 * n}" stroke="{colors[n % 3]}" stroke-width="2"/>')
        parts.append(f'<text x="{width - 118}" y="{legend_top + 4 + 16 * n}">node {n + 1}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def markdown(result):
    samples, args, load = result["samples"], result["args"], result["load"]
    warm = next((s for s in samples if s["t"] >= 300), samples[len(samples) // 6])
    end = samples[-1]
    lines = ["## Soak: memory and descriptors over time", "",
             f"Measured {result['date']} by `benchmarks/soak.sh` on the machine above, chat-relay {result['version']}: three nodes "
             f"(release build, `--history-ttl {args['history_ttl']} --request-timeout 5s --idle-timeout 20s --rate-limit 0`) "
             f"on one Redis (append-only, `everysec`), for {args['minutes']} minutes:", "",
             f"- churn: {args['slots']} connections at a time opening a stream on a random node (every fifth after another "
             "request on its connection), reading it for 0.2 to 8 s, closing it (every third with a reset): "
             f"{load['streams_opened']:,} streams opened and closed, {load['stream_failures']} failed to open;",
             f"- {args['subscribers']} subscribers of one room for the whole run: {load['main_messages']:,} messages each, "
             f"{load['main_lost']} lost, {load['main_duplicated']} duplicated, {load['main_disordered']} out of order;",
             f"- {args['rate']} POSTs a second over keep-alive connections: {load['posts']:,} accepted, {load['post_failures']} failed; "
             "15 % of them to a room of their own, which expires after the TTL;",
             f"- every 10 s, {args['abusive']} connections that send half a request head or nothing: {load['abusive']:,} in all, "
             f"{load['abuse_unclosed']} not closed by the node within 15 s.", "",
             "| | node 1 | node 2 | node 3 | Redis |", "| --- | --- | --- | --- | --- |"]
    for title, sample in (("at start", samples[0]), (f"at {warm['t'] / 60:.0f} min (warm)", warm), (f"at the end ({end['t'] / 60:.0f} min)", end)):
        cells = [f"{n['rss_mib']:.1f} MiB, {n['fds']} fds, {n['streams']:.0f} streams" for n in sample["nodes"]]
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {sample['redis_mib']:.1f} MiB, {sample['redis_keys']:,} keys |")
    growth = [end["nodes"][n]["rss_mib"] - warm["nodes"][n]["rss_mib"] for n in range(3)]
    lines += ["", f"From the warm sample to the end, resident memory changed by {', '.join(f'{g:+.1f}' for g in growth)} MiB "
              "(nodes 1 to 3) while streams kept opening and closing; descriptors follow the open connections. Redis "
              "grows because the 200 churn rooms fill toward their 1000-message history (a message every 5 s or so "
              "each, which also keeps them from expiring); its key count stays flat, as rooms of their own expire.", "",
              "![Memory and descriptors over time](benchmarks/soak.svg)", "",
              "Every sample: [benchmarks/soak.json](benchmarks/soak.json). Run it again with `benchmarks/soak.sh` "
              "(`--minutes 5` for a shorter one)."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", help="the chat-relay binary (release build); needed unless --render-only")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--slots", type=int, default=400, help="streams churning at a time")
    parser.add_argument("--subscribers", type=int, default=60, help="long-lived subscribers of one room")
    parser.add_argument("--rate", type=float, default=60, help="POSTs a second")
    parser.add_argument("--abusive", type=int, default=40, help="half-sent and silent connections every 10 s")
    parser.add_argument("--history-ttl", default="2m")
    parser.add_argument("--interval", type=float, default=10, help="seconds between samples")
    parser.add_argument("--output", default=str(ROOT / "docs"))
    parser.add_argument("--version", help="what the binary was built from (default: git describe of this tree)")
    parser.add_argument("--render-only", action="store_true", help="measure nothing: write soak.md and soak.svg again from soak.json")
    args = parser.parse_args()
    output = pathlib.Path(args.output)
    if not args.render_only and not args.relay:
        parser.error("--relay is required")
    if args.render_only:
        result = json.loads((output / "benchmarks" / "soak.json").read_text())
        svg(result["samples"], len(result["samples"][0]["nodes"]), output / "benchmarks" / "soak.svg")
        (output / "benchmarks" / "soak.md").write_text(markdown(result))
        return

    work = pathlib.Path(f"/tmp/chat-relay-soak-{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    redis_port = vs_nchan.free_port()
    redis = vs_nchan.Process(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(work), "--save", "",
                           "--appendonly", "yes", "--appendfsync", "everysec"], work / "redis.log")
    vs_nchan.wait_until(lambda: vs_nchan.port_open(redis_port), 10, "redis")
    ports, nodes = [], []
    for index in range(3):
        port = vs_nchan.free_port()
        nodes.append(vs_nchan.Process([args.relay, "serve", "--host", "127.0.0.1", "--port", str(port), "--node-id", f"soak-{index + 1}",
                                    "--redis-url", f"redis://127.0.0.1:{redis_port}", "--rate-limit", "0", "--no-client-limits",
                                    "--history-ttl", args.history_ttl, "--request-timeout", "5s", "--idle-timeout", "20s",
                                    "--max-connections", "20000"], work / f"node-{index + 1}.log"))
        ports.append(port)
    for port in ports:
        vs_nchan.wait_until(lambda: vs_nchan.port_open(port), 20, "relay")
    time.sleep(1)

    samples = []

    def sample(t):
        entry = {"t": round(t, 1), "nodes": []}
        for node, port in zip(nodes, ports):
            values = metrics(port)
            entry["nodes"].append({"rss_mib": rss_kib(node.pid) / 1024, "fds": descriptors(node.pid),
                                   "streams": values.get("chat_relay_open_streams", -1),
                                   "connections": values.get("chat_relay_open_connections", -1),
                                   "rooms": values.get("chat_relay_subscribed_rooms", -1)})
        memory, keys = redis_info(redis_port)
        entry["redis_mib"] = memory / 1048576
        entry["redis_keys"] = keys
        samples.append(entry)
        log(f"{t / 60:5.1f} min: " + "  ".join(f"{n['rss_mib']:.1f} MiB/{n['fds']} fds/{n['streams']:.0f} streams" for n in entry["nodes"])
            + f"  redis {entry['redis_mib']:.1f} MiB/{keys} keys  streams opened {load.streams_opened}")

    load = Load(ports, args)
    started = datetime.datetime.now(datetime.timezone.utc)
    # The version the binary was built from: the tree now, when soak.sh built it.
    version = args.version or vs_nchan.command_output(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    try:
        asyncio.run(load.run(args.minutes * 60, sample))
    finally:
        for node in nodes:
            node.stop()
        redis.stop()

    expected = load.main_ids
    accepted = set(expected)
    lost = duplicated = disordered = 0
    for ids in load.received:
        seen = set(ids)
        lost += len(accepted - seen)
        duplicated += len(ids) - len(seen)
        order = [i for i in ids if i in accepted]
        disordered += sum(1 for a, b in zip(order, order[1:]) if vs_nchan_less(b, a))
    result = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "version": version,
        "args": {"minutes": args.minutes, "slots": args.slots, "subscribers": args.subscribers, "rate": args.rate,
                 "abusive": args.abusive, "history_ttl": args.history_ttl},
        "load": {"streams_opened": load.streams_opened, "stream_failures": load.stream_failures, "posts": load.posts,
                 "post_failures": load.post_failures, "abusive": load.abusive, "abuse_unclosed": load.abuse_unclosed,
                 "main_messages": len(expected), "main_lost": lost, "main_duplicated": duplicated, "main_disordered": disordered},
        "samples": samples,
    }
    (output / "benchmarks").mkdir(parents=True, exist_ok=True)
    (output / "benchmarks" / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    svg(samples, len(nodes), output / "benchmarks" / "soak.svg")
    (output / "benchmarks" / "soak.md").write_text(markdown(result))
    log(f"wrote {output / 'benchmarks' / 'soak.md'}, soak.svg and soak.json")
    if (output / "benchmarks" / "results.json").exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "vs_nchan.py"), "--render-only", "--output", str(output)], check=True)


def vs_nchan_less(a, b):
    ams, aseq = (int(x) for x in a.split("-"))
    bms, bseq = (int(x) for x in b.split("-"))
    return (ams, aseq) < (bms, bseq)


if __name__ == "__main__":
    main()

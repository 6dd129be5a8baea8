#!/usr/bin/env python3
"""Two measurements of the "presence and many rooms on one stream" work, on three release nodes
on one Redis (loopback), each printed as Markdown for docs/BENCHMARKS.md:

1. rooms: N clients each following 3 rooms, as 3 single-room streams each (3N streams) or as one
   stream of the 3 rooms each (N streams), the same messages (spread over the rooms): server CPU
   (nodes and Redis) per delivery, p50/p99, lost. Rounds alternate which goes first.
2. presence: 10 000 streams opening on one room within 10 s (a third on each node), with presence
   (`?presence=1&user=u<i>`: each a member and told of the others) and without: the servers' CPU
   from the first opening until 3 s after the last, and per stream the presence events and bytes
   received.

3. opening: how long a stream of 100 rooms takes to open (until its replay is in), without
   Last-Event-ID and with `0` (5 messages per room replayed), 30 times each: the rooms are read
   concurrently, their Redis commands sharing round trips.
4. presence-get: `GET /rooms/{room}/presence` of a room of 2000 members, asked by 4 clients in a
   loop for 5 s: answers a second and the CPU of the node and Redis (a room above the cap is
   read at most once a second per node).
5. replay-memory: 100 rooms of 200 messages of 1000 bytes (`--history 200`, nodes of their own):
   the first node's resident memory with 10 clients that open a stream of all 100 rooms from `0`
   and never read, and how long one reading client takes to get all 20 000 messages, following
   the stream's ends (a replay is at most one more than a room retains, shared between rooms).

    benchmarks/rooms_and_presence.py --relay .build/release/chat-relay [--rounds 3] [--only …]
"""
import argparse
import asyncio
import http.client
import json
import pathlib
import resource
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import vs_nchan as vn  # noqa: E402  (the servers, CPU readings and `chat-relay bench` runner)


def rooms_round(binary, relay, clients, rate, duration, several_first):
    """One run of each way to follow 3 rooms, in the order asked."""
    runs = {}
    for mode in (("several", "single") if several_first else ("single", "several")):
        if mode == "single":
            runs[mode] = vn.bench(binary, relay, clients * 3, rate, duration, settle=1, rooms=3, placement="spread")
        else:
            runs[mode] = vn.bench(binary, relay, clients, rate, duration, settle=1, rooms=3, placement="spread",
                                  extra=["--one-stream-of-all-rooms"])
    return runs


def summarize(run):
    report = run["report"]
    return {"cpu_us_per_delivery": run["server_cpu_us_per_delivery"], "redis_us_per_delivery": run["redis_cpu_us_per_delivery"],
            "p50_ms": report["latencyFromSchedule"]["p50"], "p99_ms": report["latencyFromSchedule"]["p99"],
            "lost": report["lost"], "delivered": report["delivered"], "streams": report["connected"]}


async def open_streams(ports, room, count, seconds, presence):
    """Opens `count` streams of `room` spread over `ports`, evenly over `seconds`; returns the
    streams' readers (each counting bytes and presence events) once all are open."""
    results = [{"bytes": 0, "presence": 0, "ok": False} for _ in range(count)]
    writers = []

    async def one(index):
        port = ports[index % len(ports)]
        query = f"presence=1&user=u{index}" if presence else "x=1"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        writer.write(f"GET /rooms/{room}/events?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        results[index]["ok"] = head.startswith(b"HTTP/1.1 200")
        tail = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            results[index]["bytes"] += len(chunk)
            text = tail + chunk
            results[index]["presence"] += text.count(b"event: presence\n")
            tail = text[-16:]

    tasks = []
    start = time.monotonic()
    for index in range(count):
        delay = start + seconds * index / count - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    return tasks, writers, results


async def presence_round(relay, presence, count, seconds, tail_seconds=3.0):
    room = f"arrivals-{int(time.time() * 1000)}"
    pids = relay.all_pids()
    cpu_start = vn.cpu_seconds(pids)
    redis_start = vn.cpu_seconds(relay.redis.pids())
    started = time.monotonic()
    tasks, writers, results = await open_streams(relay.ports[:relay.serving], room, count, seconds, presence)
    opened_in = time.monotonic() - started
    await asyncio.sleep(tail_seconds)
    cpu = vn.cpu_seconds(pids) - cpu_start
    redis_cpu = vn.cpu_seconds(relay.redis.pids()) - redis_start
    window = time.monotonic() - started
    opened = sum(1 for r in results if r["ok"])
    for writer in writers:
        writer.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(4)  # the leaves settle before the next round
    return {"presence": presence, "opened": opened, "opened_in_s": round(opened_in, 2), "window_s": round(window, 2),
            "server_cpu_s": round(cpu, 2), "redis_cpu_s": round(redis_cpu, 2),
            "presence_events_per_stream": round(statistics.mean(r["presence"] for r in results), 2),
            "bytes_per_stream": round(statistics.mean(r["bytes"] for r in results), 1)}


def opening_round(relay, rooms=100, per_room=5, times=30):
    """Median, min and max ms to open a stream of `rooms` rooms on the first node, without
    Last-Event-ID and with `0` (all `per_room` messages of each replayed)."""
    port = relay.ports[0]
    names = [f"open-{int(time.time() * 1000)}-{index}" for index in range(rooms)]
    connection = http.client.HTTPConnection("127.0.0.1", port)
    for name in names:
        for index in range(per_room):
            connection.request("POST", f"/rooms/{name}/messages", json.dumps({"user": "u", "text": f"m{index}"}),
                               {"Content-Type": "application/json"})
            reply = connection.getresponse()
            reply.read()
            assert reply.status == 201, reply.status
    query = "&".join(f"room={name}" for name in names)

    def once(resume):
        with socket.create_connection(("127.0.0.1", port)) as stream:
            started = time.perf_counter()
            extra = "&lastEventId=0" if resume else ""
            stream.sendall(f"GET /events?{query}{extra} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
            received = b""
            while True:
                received += stream.recv(1 << 20)
                if resume and received.count(b"event: message") >= rooms * per_room:
                    break
                if not resume and b"\r\n\r\n" in received and received.split(b"\r\n\r\n", 1)[1]:
                    break
            return (time.perf_counter() - started) * 1000

    outcome = {}
    for name, resume in (("newest", False), ("replay", True)):
        times_ms = [once(resume) for _ in range(times)]
        outcome[name] = {"median_ms": round(statistics.median(times_ms), 2), "min_ms": round(min(times_ms), 2),
                         "max_ms": round(max(times_ms), 2)}
    return outcome


def presence_get_round(relay, members=2000, clients=4, seconds=5.0):
    """Answers a second and CPU of `GET …/presence` of a room of `members`, asked by `clients`
    in a loop on the first node."""
    port = relay.ports[0]
    room = f"big-{int(time.time() * 1000)}"
    streams = []
    for index in range(members):
        stream = socket.create_connection(("127.0.0.1", port))
        stream.sendall(f"GET /rooms/{room}/events?user=u{index} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        streams.append(stream)

    def count():
        connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.request("GET", f"/rooms/{room}/presence")
        return json.loads(connection.getresponse().read())["count"]

    vn.wait_until(lambda: count() == members, 30, f"{members} members in {room}")
    answered = [0] * clients
    stop = time.monotonic() + seconds

    def client(index):
        connection = http.client.HTTPConnection("127.0.0.1", port)
        while time.monotonic() < stop:
            connection.request("GET", f"/rooms/{room}/presence")
            reply = connection.getresponse()
            reply.read()
            assert reply.status == 200, reply.status
            answered[index] += 1

    node_start = vn.cpu_seconds(relay.all_pids())
    redis_start = vn.cpu_seconds(relay.redis.pids())
    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    servers = vn.cpu_seconds(relay.all_pids()) - node_start
    redis = vn.cpu_seconds(relay.redis.pids()) - redis_start
    for stream in streams:
        stream.close()
    time.sleep(2)  # the leaves settle
    return {"members": members, "answers_per_s": round(sum(answered) / seconds), "servers_cpu_s": round(servers, 2),
            "redis_cpu_s": round(redis, 2), "seconds": seconds}


def resident_kib(pid):
    """(VmRSS, VmHWM) of `pid` in KiB."""
    fields = dict(line.split(":", 1) for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def replay_memory_round(binary, work, rooms=100, per_room=200, size=1000, stalled=10):
    """See the module's docstring (5)."""
    relay = vn.Relay(pathlib.Path(work) / "replay-memory", binary, arguments=["--history", str(per_room)])
    relay.start()
    try:
        port = relay.ports[0]
        names = [f"replay-{index}" for index in range(rooms)]
        text = "r" * size

        def post(worker):
            connection = http.client.HTTPConnection("127.0.0.1", port)
            for index in range(worker, rooms * per_room, 4):
                connection.request("POST", f"/rooms/{names[index % rooms]}/messages",
                                   json.dumps({"user": "u", "text": f"{index} {text}"}), {"Content-Type": "application/json"})
                reply = connection.getresponse()
                reply.read()
                assert reply.status == 201, reply.status

        workers = [threading.Thread(target=post, args=(worker,)) for worker in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        query = "&".join(f"room={name}" for name in names)
        pid = relay.node_pids()[0]
        before, _ = resident_kib(pid)
        sockets = []
        for _ in range(stalled):
            stream = socket.socket()
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stream.connect(("127.0.0.1", port))
            stream.sendall(f"GET /events?{query}&lastEventId=0 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sockets.append(stream)
        time.sleep(3)
        held, peak = resident_kib(pid)
        for stream in sockets:
            stream.close()

        # One client that reads, from 0, as an EventSource does: on each end it comes back with
        # the last id it got.
        started = time.monotonic()
        received, connections, position = 0, 0, "0"
        while received < rooms * per_room and connections < 1000:
            connections += 1
            with socket.create_connection(("127.0.0.1", port)) as stream:
                stream.sendall(f"GET /events?{query}&lastEventId={position} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                buffered = b""
                while received < rooms * per_room:
                    chunk = stream.recv(1 << 20)
                    if not chunk:
                        break
                    *lines, buffered = (buffered + chunk).split(b"\n")
                    for line in lines:
                        if line.startswith(b"id: "):
                            position = line[4:].decode()
                        elif line == b"event: message":
                            received += 1
            if received < rooms * per_room:
                time.sleep(0.01)  # the stream's retry: 10
        caught_up = time.monotonic() - started
        return {"stalled_clients": stalled, "resident_before_mib": round(before / 1024, 1),
                "resident_with_stalled_mib": round(held / 1024, 1), "peak_mib": round(peak / 1024, 1),
                "catch_up_s": round(caught_up, 2), "catch_up_connections": connections, "received": received}
    finally:
        relay.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", default=".build/release/chat-relay")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=1000, help="clients of the rooms measurement, each following 3 rooms")
    parser.add_argument("--rate", type=float, default=30)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--arrivals", type=int, default=10000)
    parser.add_argument("--arrival-seconds", type=float, default=10)
    parser.add_argument("--only", choices=["rooms", "presence", "opening", "presence-get", "replay-memory"])
    parser.add_argument("--work", default="/tmp/chat-relay-rooms-and-presence")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binary = str(pathlib.Path(args.relay).resolve())
    relay = vn.Relay(pathlib.Path(args.work), binary)
    results = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rooms": [], "presence": [], "opening": [],
               "presence_get": [], "replay_memory": []}
    if args.only in (None, "replay-memory"):
        for _ in range(args.rounds):
            results["replay_memory"].append(replay_memory_round(binary, args.work))
            print(json.dumps(results["replay_memory"][-1]), file=sys.stderr, flush=True)
        if args.only == "replay-memory":
            print(json.dumps(results, indent=2))
            return
    relay.start()
    try:
        if args.only in (None, "rooms"):
            for index in range(args.rounds):
                run = rooms_round(binary, relay, args.clients, args.rate, args.duration, several_first=index % 2 == 1)
                results["rooms"].append({mode: summarize(value) for mode, value in run.items()})
                print(json.dumps(results["rooms"][-1]), file=sys.stderr, flush=True)
        if args.only in (None, "opening"):
            for _ in range(args.rounds):
                results["opening"].append(opening_round(relay))
                print(json.dumps(results["opening"][-1]), file=sys.stderr, flush=True)
        if args.only in (None, "presence-get"):
            for _ in range(args.rounds):
                results["presence_get"].append(presence_get_round(relay))
                print(json.dumps(results["presence_get"][-1]), file=sys.stderr, flush=True)
        if args.only in (None, "presence"):
            for index in range(args.rounds):
                for presence in ((True, False) if index % 2 == 0 else (False, True)):
                    outcome = asyncio.run(presence_round(relay, presence, args.arrivals, args.arrival_seconds))
                    results["presence"].append(outcome)
                    print(json.dumps(outcome), file=sys.stderr, flush=True)
    finally:
        relay.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

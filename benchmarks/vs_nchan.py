#!/usr/bin/env python3
"""chat-relay against Nchan, side by side, with one load tool (`chat-relay bench`).

Starts three Nchan nodes (nginx + libnginx-mod-nchan) on one Redis and three chat-relay nodes on
another Redis, all on loopback, runs the same scenarios against each, reads every server's CPU
time and memory from /proc, and writes docs/BENCHMARKS.md, docs/benchmarks/results.json and
docs/benchmarks/latency-vs-load.svg. Run it through benchmarks/vs-nchan.sh, which installs and
builds what it needs.

CPU is the user + system time of the three nodes and their Redis, from the moment every stream is
open to the end of the run, divided by the deliveries. Memory is the proportional set size (PSS,
so nginx workers' shared memory is not counted twice) of the three nodes with every stream open
and idle, minus the same right after they started, divided by the streams.
"""

import argparse
import copy
import datetime
import json
import math
import os
import pathlib
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

SCENARIOS = {
    # rounds: runs per system, alternating which goes first; the page shows each number's median.
    "light": dict(subscribers=30, rate=20, duration=20, rounds=5),
    "medium": dict(subscribers=3000, rate=25, duration=20, rounds=3),
    # The shape most apps publish in: one keep-alive connection to one node, subscribers over all.
    "light-one": dict(subscribers=30, rate=20, duration=20, rounds=5, publish="one"),
    "medium-one": dict(subscribers=3000, rate=25, duration=20, rounds=3, publish="one"),
    "connections": dict(subscribers=6000, rate=10, duration=10, settle=3),
    "saturation": dict(subscribers=3000, rates=[25, 35, 50, 60, 70, 85, 100, 125, 150, 200, 300, 400, 600, 800, 1000], duration=10),
    # The same, every POST on one keep-alive connection to the first node.
    "saturation-one": dict(subscribers=3000, rates=[25, 35, 50, 60, 70, 85, 100, 125, 150, 200, 300, 400, 600, 800, 1000],
                           duration=10, publish="one"),
    # Chat as it mostly is: many small rooms. 3000 rooms of 3 subscribers, 300 msg/s spread over the
    # rooms; each room's subscribers on one node, or spread over the three. A fourth node of each
    # system runs beside them with no subscriber; chat-relay also runs with one shared channel (the
    # design before interest routing).
    "many-rooms": dict(subscribers=9000, rooms=3000, rate=300, duration=20, settle=3, placement="together", rounds=2,
                       idle_node=True, shared=True),
    "many-rooms-spread": dict(subscribers=9000, rooms=3000, rate=300, duration=20, settle=3, placement="spread", rounds=2,
                              idle_node=True, shared=True),
    # The many-rooms shape (spread) at rising rates, chat-relay only: on one Redis, and on a Redis
    # Cluster of three masters (no replicas, as the one Redis has none), each master's CPU read
    # on its own.
    "saturation-many-rooms": dict(subscribers=9000, rooms=3000, rates=[300, 1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000], duration=10,
                                  settle=3, placement="spread", redis_cluster=True),
}
QUICK = {
    "light": dict(subscribers=30, rate=20, duration=3),
    "medium": dict(subscribers=300, rate=25, duration=3),
    "light-one": dict(subscribers=30, rate=20, duration=3, publish="one"),
    "medium-one": dict(subscribers=300, rate=25, duration=3, publish="one"),
    "connections": dict(subscribers=600, rate=10, duration=2, settle=1),
    "saturation": dict(subscribers=300, rates=[25, 200], duration=2, every_step=True),
    "saturation-one": dict(subscribers=300, rates=[25, 200], duration=2, publish="one", every_step=True),
    "many-rooms": dict(subscribers=900, rooms=300, rate=100, duration=3, settle=1, placement="together", idle_node=True,
                       shared=True),
    "many-rooms-spread": dict(subscribers=900, rooms=300, rate=100, duration=3, settle=1, placement="spread",
                              idle_node=True, shared=True),
    "saturation-many-rooms": dict(subscribers=900, rooms=300, rates=[100, 300], duration=2, settle=1, placement="spread",
                                  redis_cluster=True, every_step=True),
}
# How long the idle node's CPU is read with nothing running, before each many-rooms run.
IDLE_WINDOW_SECONDS = 5
SATURATION_P99_MS = 100.0


def log(message):
    print(f"vs-nchan: {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready within {timeout} s")


def port_open(port):
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def children(pid):
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as file:
                found += [int(child) for child in file.read().split()]
    except OSError:
        pass
    return found


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except OSError:
            pass
    return total / CLOCK_TICKS


def thread_cpu(pids):
    """CPU time of every thread of `pids` from the scheduler's nanosecond accounting
    (/proc/<pid>/task/<tid>/schedstat), by thread: for small amounts, where clock ticks (10 ms)
    are too coarse. Compare two readings with `cpu_seconds_between`."""
    threads = {}
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as file:
                    threads[(pid, task)] = int(file.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return threads


def cpu_seconds_between(before, after):
    """CPU seconds spent between two `thread_cpu` readings: each thread's growth, a thread born
    meanwhile counted whole. A thread that exited meanwhile (a runtime's idle worker) is missing
    from the second reading and its last moments are not counted; summing the threads of each
    reading instead made its whole life vanish, and an idle node's CPU came out negative."""
    return sum(value - before.get(thread, 0) for thread, value in after.items()) / 1e9


def machine_busy_seconds():
    """CPU time the whole machine spent busy (every process, and the kernel's softirq work, which
    loopback TCP charges to no process when ksoftirqd does it)."""
    with open("/proc/stat") as file:
        fields = [int(value) for value in file.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as file:
                for line in file:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


class Process:
    """A server process started here, stopped by its pid."""

    def __init__(self, argv, log_path, cwd=None):
        self.log_file = open(log_path, "wb")
        self.process = subprocess.Popen(argv, stdout=self.log_file, stderr=subprocess.STDOUT, cwd=cwd,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self):
        return self.process.pid

    def pids(self):
        return [self.pid] + children(self.pid)

    def stop(self):
        if self.process.poll() is None:
            # The whole process group: nginx's workers would outlive their master otherwise.
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10)
        self.log_file.close()


class System:
    """Three nodes of one kind on their own Redis."""

    preset = ""

    def __init__(self, work, nodes=3):
        self.work = work
        self.serving = nodes
        self.node_count = nodes
        self.redis = None
        self.nodes = []
        self.ports = []

    def with_idle_node(self, idle):
        """The next start runs a fourth node that no stream or POST goes to (`idle_node_pids`)."""
        self.node_count = self.serving + (1 if idle else 0)

    # How long a node may take to become ready.
    ready_timeout = 20

    def start(self):
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        redis = self.start_redis()
        for index in range(self.node_count):
            port = free_port()
            self.ports.append(port)
            self.nodes.append(self.start_node(index, port, redis))
        for port in self.ports:
            wait_until(lambda: self.ready(port), self.ready_timeout, f"{self.name} node on :{port}")
        time.sleep(1)  # let the nodes settle before the idle memory reading

    def start_redis(self):
        """Starts the system's Redis (`self.redis`); returns what `start_node` gets to reach it: its port."""
        redis_port = free_port()
        self.redis = Process(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                              "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.work),
                              "--protected-mode", "no"], self.work / "redis.log")
        wait_until(lambda: port_open(redis_port), 10, "redis-server")
        return redis_port

    def stop(self):
        for node in self.nodes:
            node.stop()
        if self.redis:
            self.redis.stop()
        self.nodes, self.ports, self.redis = [], [], None

    def node_pids(self):
        return [pid for node in self.nodes[:self.serving] for pid in node.pids()]

    def idle_node_pids(self):
        return [pid for node in self.nodes[self.serving:] for pid in node.pids()]

    def all_pids(self):
        return self.node_pids() + self.redis.pids()

    def targets(self):
        return [f"http://127.0.0.1:{port}" for port in self.ports[:self.serving]]


class Relay(System):
    name = "chat-relay"
    preset = "relay"

    def __init__(self, work, binary, name="chat-relay", arguments=()):
        super().__init__(work)
        self.binary = binary
        self.name = name
        self.arguments = list(arguments)

    def start_node(self, index, port, redis):
        return Process([self.binary, "serve", "--host", "127.0.0.1", "--port", str(port),
                        "--redis-url", self.redis_url(redis), "--node-id", f"relay-{index + 1}",
                        "--rate-limit", "0", "--no-client-limits", "--max-connections", "20000", "--log-level", "warning"] + self.arguments,
                       self.work / f"relay-{index + 1}.log")

    @staticmethod
    def redis_url(redis_port):
        return f"redis://127.0.0.1:{redis_port}"

    @staticmethod
    def ready(port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as response:
            return response.status == 200


class RelayOnCluster(Relay):
    """chat-relay's three nodes on a Redis Cluster of three masters (no replicas) on loopback."""

    ready_timeout = 30

    def __init__(self, work, binary):
        super().__init__(work, binary, name="chat-relay, Redis Cluster")

    def start_redis(self):
        """Three masters joined into a cluster; returns the seeds for `--redis-url`."""
        ports, masters = [], []
        for index in range(3):
            # Each node's cluster bus listens 10000 above its port: both must be free.
            port = next(p for p in iter(free_port, None) if p + 10000 < 65536 and not port_open(p + 10000))
            ports.append(port)
            directory = self.work / f"redis-{index + 1}"
            directory.mkdir()
            masters.append(Process(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                         "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(directory),
                                         "--cluster-enabled", "yes", "--cluster-node-timeout", "5000", "--protected-mode", "no"],
                                        self.work / f"redis-{index + 1}.log"))
        # Stopped with the system from here on, even if the cluster does not come together.
        self.redis = Masters(masters)
        for port in ports:
            wait_until(lambda: port_open(port), 10, "redis-server")
        subprocess.run(["redis-cli", "--cluster", "create"] + [f"127.0.0.1:{port}" for port in ports]
                       + ["--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        wait_until(lambda: "cluster_state:ok" in subprocess.run(["redis-cli", "-p", str(ports[0]), "cluster", "info"],
                                                                capture_output=True, text=True).stdout, 30, "the Redis Cluster")
        return "redis://" + ",".join(f"127.0.0.1:{port}" for port in ports)

    @staticmethod
    def redis_url(seeds):
        return seeds


class Masters:
    """A Redis Cluster's master processes, as one `redis` of a system (`pids`), each also on its own (`parts`)."""

    def __init__(self, processes):
        self.processes = processes

    def pids(self):
        return [pid for process in self.processes for pid in process.pids()]

    def parts(self):
        return [process.pids() for process in self.processes]

    def stop(self):
        for process in self.processes:
            process.stop()


class Nchan(System):
    name = "Nchan"
    preset = "nchan"

    def __init__(self, work, workers):
        super().__init__(work)
        self.workers = workers

    def start_node(self, index, port, redis_port):
        directory = self.work / f"nchan-{index + 1}"
        directory.mkdir()
        template = (ROOT / "benchmarks" / "nchan.conf.template").read_text()
        config = (template.replace("@DIR@", str(directory)).replace("@WORKERS@", str(self.workers))
                  .replace("@REDIS_PORT@", str(redis_port)).replace("@PORT@", str(port)))
        (directory / "nginx.conf").write_text(config)
        return Process(["nginx", "-c", str(directory / "nginx.conf"), "-p", str(directory)], directory / "out.log")

    @staticmethod
    def ready(port):
        # Nchan listens before its workers have connected to Redis, and answers 503 until they
        # have: ready once several fresh connections in a row (each may reach another worker)
        # get a channel's status (404: no such channel yet) rather than 503.
        for _ in range(8):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/pub/ready-check", timeout=1):
                    pass
            except urllib.error.HTTPError as error:
                if error.code == 503:
                    return False
        return True


def bench(relay_binary, system, subscribers, rate, duration, settle=0.5, publish="spread", rooms=1, placement="spread",
          extra=()):
    """Runs `chat-relay bench` against `system`; returns its report with the servers' CPU and memory.
    `publish`: "spread" (4 keep-alive connections over every node) or "one" (one to the first node).
    `rooms` and `placement`: as `chat-relay bench --rooms --placement`; `extra`: more of its flags."""
    argv = [relay_binary, "bench", "--preset", system.preset, "--json", "--subscribers", str(subscribers),
            "--rate", str(rate), "--duration", str(duration), "--settle", str(settle)] + list(extra)
    if rooms > 1:
        argv += ["--rooms", str(rooms), "--placement", placement, "--connect-concurrency", "256"]
    for target in system.targets():
        argv += ["--target", target]
    if publish == "one":
        argv += ["--publish-target", system.targets()[0], "--publishers", "1"]
    idle_node_at_rest = None
    if system.idle_node_pids():
        # The idle node's CPU with nothing running anywhere, per second.
        before = thread_cpu(system.idle_node_pids())
        time.sleep(IDLE_WINDOW_SECONDS)
        idle_node_at_rest = cpu_seconds_between(before, thread_cpu(system.idle_node_pids())) / IDLE_WINDOW_SECONDS
    idle_kib = pss_kib(system.node_pids())
    sample = {}

    def on_stderr(stream):
        for line in stream:
            line = line.rstrip("\n")
            if "streams open" in line and "open_kib" not in sample:
                sample["open_kib"] = pss_kib(system.node_pids())
                sample["cpu_open"] = cpu_seconds(system.all_pids())
                sample["redis_open"] = cpu_seconds(system.redis.pids())
                sample["redis_parts_open"] = redis_parts_cpu(system)
                sample["idle_node_open"] = thread_cpu(system.idle_node_pids())
                sample["time_open"] = time.monotonic()
                sample["machine_open"] = machine_busy_seconds()
            print(f"  {system.name}: {line}", file=sys.stderr, flush=True)

    cpu_start = cpu_seconds(system.all_pids())
    redis_start = cpu_seconds(system.redis.pids())
    redis_parts_start = redis_parts_cpu(system)
    idle_node_start = thread_cpu(system.idle_node_pids())
    time_start = time.monotonic()
    machine_start = machine_busy_seconds()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader = threading.Thread(target=on_stderr, args=(process.stderr,))
    reader.start()
    output = process.stdout.read()
    process.wait()
    reader.join()
    cpu_end = cpu_seconds(system.all_pids())
    redis_end = cpu_seconds(system.redis.pids())
    redis_parts_end = redis_parts_cpu(system)
    idle_node_end = thread_cpu(system.idle_node_pids())
    time_end = time.monotonic()
    machine_end = machine_busy_seconds()
    if process.returncode == 2 or not output.strip():
        raise RuntimeError(f"bench against {system.name} could not run (exit {process.returncode})")
    report = json.loads(output)
    delivered = report["delivered"]
    streams = report["connected"] + report["disconnected"]
    cpu = cpu_end - sample.get("cpu_open", cpu_start)
    redis_cpu = redis_end - sample.get("redis_open", redis_start)
    machine = machine_end - sample.get("machine_open", machine_start)
    extra = {}
    if idle_node_at_rest is not None:
        seconds = time_end - sample.get("time_open", time_start)
        extra = {"idle_node_cpu_ms_per_s_at_rest": round(idle_node_at_rest * 1000, 3),
                 "idle_node_cpu_ms_per_s_during_run": round(
                     cpu_seconds_between(sample.get("idle_node_open", idle_node_start), idle_node_end) / seconds * 1000, 3)}
        if isinstance(system, Relay):
            extra["idle_node_events_received"] = relay_metric(system.ports[system.serving], "chat_relay_redis_events_received_total")
    if redis_parts_end:
        before = sample.get("redis_parts_open", redis_parts_start)
        extra["redis_master_cpu_us_per_delivery"] = [round((end - start) * 1e6 / delivered, 2) if delivered else None
                                                     for start, end in zip(before, redis_parts_end)]
    return extra | {
        "report": report,
        "exit": process.returncode,
        "server_cpu_seconds": round(cpu, 3),
        "server_cpu_us_per_delivery": round(cpu * 1e6 / delivered, 2) if delivered else None,
        "machine_cpu_us_per_delivery": round(machine * 1e6 / delivered, 2) if delivered else None,
        "redis_cpu_us_per_delivery": round(redis_cpu * 1e6 / delivered, 2) if delivered else None,
        "idle_kib": idle_kib,
        "open_kib": sample.get("open_kib"),
        "kib_per_subscriber": round((sample["open_kib"] - idle_kib) / streams, 2) if streams and "open_kib" in sample else None,
    }


def redis_parts_cpu(system):
    """Each Redis Cluster master's CPU seconds so far, or [] for one Redis."""
    parts = getattr(system.redis, "parts", None)
    return [cpu_seconds(pids) for pids in parts()] if parts else []


def relay_metric(port, name):
    """An unlabelled metric of a chat-relay node (0 when it has not been recorded yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[-1])
    except OSError:
        return None
    return 0


def scenario_systems(spec, systems):
    """The systems a scenario runs on: every one, with chat-relay on one shared channel too where the
    scenario asks (`shared`), each with an idle fourth node where it asks (`idle_node`)."""
    chosen = list(systems)
    if spec.get("redis_cluster"):
        relays = [system for system in systems if isinstance(system, Relay)]
        return relays + [RelayOnCluster(system.work.parent / "relay-redis-cluster", system.binary) for system in relays]
    if spec.get("shared"):
        chosen += [Relay(system.work.parent / "relay-shared", system.binary, name=SHARED, arguments=["--redis-channels", "shared"])
                   for system in systems if isinstance(system, Relay)]
    for system in chosen:
        system.with_idle_node(spec.get("idle_node", False))
    return chosen


def bench_spec(relay_binary, system, spec):
    """`bench` with a non-saturation scenario's parameters."""
    return bench(relay_binary, system, spec["subscribers"], spec["rate"], spec["duration"], spec.get("settle", 0.5),
                 spec.get("publish", "spread"), spec.get("rooms", 1), spec.get("placement", "spread"))


SHARED = "chat-relay, shared channel"


def run_scenario(name, spec, systems, relay_binary):
    systems = scenario_systems(spec, systems)
    if spec.get("rounds", 1) > 1:
        return run_rounds(name, spec, systems, relay_binary)
    results = {}
    for system in systems:
        log(f"{name}: {system.name}, {spec}")
        system.start()
        try:
            if name.startswith("saturation"):
                steps = []
                for rate in spec["rates"]:
                    step = bench(relay_binary, system, spec["subscribers"], rate, spec["duration"], spec.get("settle", 0.5),
                                 spec.get("publish", "spread"), spec.get("rooms", 1), spec.get("placement", "spread"))
                    step["rate"] = rate
                    steps.append(step)
                    report = step["report"]
                    p99 = report["latencyFromSchedule"]["p99"]
                    log(f"  {system.name} at {rate} msg/s: {report['deliveriesPerSecond']:.0f} deliveries/s, p99 {p99} ms, lost {report['lost']}")
                    # A smoke run (--quick) takes every step, whatever the machine's load: it checks
                    # the pipeline, not where saturation is.
                    saturated = p99 > SATURATION_P99_MS or report["lost"] > 0 or report["rateAchieved"] < 0.9 * rate
                    if saturated and not spec.get("every_step"):
                        break
                results[system.name] = {"steps": steps}
            else:
                results[system.name] = bench_spec(relay_binary, system, spec)
        finally:
            system.stop()
    return results


def run_rounds(name, spec, systems, relay_binary):
    """Runs the scenario `rounds` times per system, each on freshly started servers, alternating which
    system goes first so that drift on the machine weighs on both; combines each system's rounds."""
    runs = {system.name: [] for system in systems}
    for index in range(spec["rounds"]):
        for system in (systems if index % 2 == 0 else list(reversed(systems))):
            log(f"{name}: {system.name}, round {index + 1} of {spec['rounds']}, {spec}")
            system.start()
            try:
                runs[system.name].append(bench_spec(relay_binary, system, spec))
            finally:
                system.stop()
    return {system: combine_rounds(rounds) for system, rounds in runs.items()}


def combine_rounds(rounds):
    """One result from several rounds: every number is the median over the rounds, except messages lost
    (the sum) and the exit status (the worst); the rounds' own numbers are kept under "rounds"."""
    def median(values):
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 3) if values else None

    result = copy.deepcopy(rounds[0])
    report = result["report"]
    for key in report["latencyFromSchedule"]:
        report["latencyFromSchedule"][key] = median(r["report"]["latencyFromSchedule"][key] for r in rounds)
    for key in ("deliveriesPerSecond", "clientCPUMicrosecondsPerDelivery", "rateAchieved"):
        report[key] = median(r["report"][key] for r in rounds)
    for key in ("lost", "duplicated", "outOfOrder", "delivered", "deliveriesExpected"):
        report[key] = sum(r["report"][key] for r in rounds)
    for key in ("server_cpu_us_per_delivery", "machine_cpu_us_per_delivery", "kib_per_subscriber", "redis_cpu_us_per_delivery",
                "idle_node_cpu_ms_per_s_at_rest", "idle_node_cpu_ms_per_s_during_run", "idle_node_events_received"):
        if key in result:
            result[key] = median(r.get(key) for r in rounds)
    result["exit"] = max(r["exit"] for r in rounds)
    result["rounds"] = [{"p50": r["report"]["latencyFromSchedule"]["p50"], "p99": r["report"]["latencyFromSchedule"]["p99"],
                         "server_cpu_us_per_delivery": r["server_cpu_us_per_delivery"],
                         "machine_cpu_us_per_delivery": r.get("machine_cpu_us_per_delivery")} for r in rounds]
    return result


def saturation_rate(steps):
    """The first rate whose p99 from the schedule passed the bar (or that lost messages), else None."""
    for step in steps:
        report = step["report"]
        if report["latencyFromSchedule"]["p99"] > SATURATION_P99_MS or report["lost"] > 0 or report["rateAchieved"] < 0.9 * step["rate"]:
            return step["rate"]
    return None


def last_good(steps):
    good = [s for s in steps if s["report"]["latencyFromSchedule"]["p99"] <= SATURATION_P99_MS and s["report"]["lost"] == 0]
    return good[-1] if good else None


def command_output(argv):
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (result.stdout + result.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as file:
        memory_kib = int(file.readline().split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "nginx": command_output(["nginx", "-v"]),
        "nchan": command_output(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan"]),
        "redis": command_output(["redis-server", "--version"]),
        "chat_relay": command_output(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
    }


def svg_plot(results, path):
    """Latency (p50 dashed, p99 solid, from the schedule, log scale) against deliveries per second."""
    series = {name: data["steps"] for name, data in results.get("saturation", {}).items()}
    if not series:
        return
    colors = {"Nchan": "#d9534f", "chat-relay": "#2a6fdb"}
    width, height, left, right, top, bottom = 760, 440, 70, 20, 40, 60
    max_x = max(s["report"]["deliveriesPerSecond"] for steps in series.values() for s in steps) * 1.08
    low, high = 0.1, 10000.0

    def px(value):
        return left + (width - left - right) * value / max_x

    def py(ms):
        ms = min(max(ms, low), high)
        return top + (height - top - bottom) * (1 - (math.log10(ms) - math.log10(low)) / (math.log10(high) - math.log10(low)))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">Delivery latency from the schedule against load '
             f'({results["saturation"][next(iter(series))]["steps"][0]["report"]["subscribers"]} subscribers, 3 nodes each)</text>']
    for decade in [0.1, 1, 10, 100, 1000, 10000]:
        y = py(decade)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{decade:g} ms</text>')
    y100 = py(SATURATION_P99_MS)
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y100:.1f}" y2="{y100:.1f}" stroke="#888" stroke-dasharray="2,3"/>')
    steps_x = 10 ** math.floor(math.log10(max_x / 2)) if max_x > 0 else 1
    tick = 0.0
    while tick <= max_x:
        x = px(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" stroke="#eee"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick / 1000:g}k</text>')
        tick += steps_x
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 18}" text-anchor="middle">deliveries per second (achieved)</text>')
    for index, (name, steps) in enumerate(series.items()):
        color = colors.get(name, "#333")
        for key, dash in (("p99", ""), ("p50", ' stroke-dasharray="6,4"')):
            points = " ".join(f'{px(s["report"]["deliveriesPerSecond"]):.1f},{py(s["report"]["latencyFromSchedule"][key]):.1f}' for s in steps)
            parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
            for s in steps:
                parts.append(f'<circle cx="{px(s["report"]["deliveriesPerSecond"]):.1f}" cy="{py(s["report"]["latencyFromSchedule"][key]):.1f}" r="3" fill="{color}"/>')
        ly = top + 16 + index * 34
        parts.append(f'<line x1="{left + 12}" x2="{left + 42}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{left + 48}" y="{ly + 4}">{name} p99</text>')
        parts.append(f'<line x1="{left + 12}" x2="{left + 42}" y1="{ly + 15}" y2="{ly + 15}" stroke="{color}" stroke-width="2" stroke-dasharray="6,4"/>')
        parts.append(f'<text x="{left + 48}" y="{ly + 19}">{name} p50</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def redis_cluster_section(results, spec, measured, fmt):
    """The many-rooms shape at rising rates on one Redis and on a Redis Cluster of three masters."""
    name = "saturation-many-rooms"
    if name not in results:
        return []
    scenario = spec[name]
    when = f" (measured {measured[name][:16].replace('T', ' ')} UTC)" if name in measured else ""
    lines = ["## One Redis or a Redis Cluster" + when, "",
             f"chat-relay only: {scenario['subscribers']} subscribers in {scenario['rooms']} rooms, each room's subscribers "
             "spread over the three nodes, the publish rate rising until p99 (from the schedule) passes "
             f"{SATURATION_P99_MS:g} ms, a message is lost, or the publisher falls 10 % behind. Once on one Redis, once on a "
             "Redis Cluster of three masters (no replicas on either side; `--redis-url` with three seeds). Redis CPU is "
             "per delivery; on the cluster, each master's share is given as well.", "",
             "| Redis | msg/s asked | msg/s achieved | deliveries/s | p50 ms | p99 ms | lost | server CPU µs/delivery | "
             "Redis CPU µs/delivery | per master |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for system, label in (("chat-relay", "one"), ("chat-relay, Redis Cluster", "cluster, 3 masters")):
        for step in results[name].get(system, {}).get("steps", []):
            report = step["report"]
            masters = step.get("redis_master_cpu_us_per_delivery")
            lines.append(f"| {label} | {step['rate']} | {fmt(report['rateAchieved'])} | {fmt(round(report['deliveriesPerSecond']))} | "
                         f"{fmt(report['latencyFromSchedule']['p50'])} | {fmt(report['latencyFromSchedule']['p99'])} | "
                         f"{report['lost']} | {fmt(step['server_cpu_us_per_delivery'])} | {fmt(step.get('redis_cpu_us_per_delivery'))} | "
                         f"{' / '.join(fmt(m) for m in masters) if masters else '–'} |")
    saturations = {system: saturation_rate(results[name].get(system, {}).get("steps", []))
                   for system in ("chat-relay", "chat-relay, Redis Cluster")}
    lines += ["", "Saturation (the first rate past the bar): "
              + ", ".join(f"{system}: {rate if rate else 'not reached'}" + (" msg/s" if rate else "")
                          for system, rate in saturations.items()) + ".", ""]
    return lines


def many_rooms_section(results, spec, measured, fmt):
    """The many-rooms scenarios: both placements, each system, CPU split into nodes and Redis, and the
    idle fourth node."""
    names = [name for name in ("many-rooms", "many-rooms-spread") if name in results]
    if not names:
        return []
    first = spec[names[0]]
    when = measured.get(names[0])
    lines = ["## Many rooms", "",
             f"{first['rooms']} rooms of {first['subscribers'] // first['rooms']} subscribers over three nodes, "
             f"{first['rate']} msg/s spread evenly over the rooms, {first['duration']} s"
             + (f", median of {first['rounds']} rounds per system" if first.get("rounds", 1) > 1 else "")
             + (f" (measured {when[:16].replace('T', ' ')} UTC)" if when else "") + ". `together`: each room's "
             "subscribers on one node (each node serves a third of the rooms); `spread`: a room's three subscribers "
             "on three nodes (every node serves every room). POSTs over four keep-alive connections to the three "
             "nodes. A fourth node of each system runs beside them with no subscriber and no POST: its CPU during the "
             f"run against the same node at rest ({IDLE_WINDOW_SECONDS} s just before). Server CPU counts the three "
             "serving nodes and Redis; Redis CPU is Redis's share of it. `chat-relay, shared channel` is chat-relay "
             "with `--redis-channels shared`, the design before interest routing (every node hears every room).", "",
             "| placement | system | deliveries/s | p50 ms | p99 ms | lost | server CPU µs/delivery | Redis CPU µs/delivery | idle node CPU ms/s, at rest → during the run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in names:
        for system in ("Nchan", "chat-relay", SHARED):
            result = results[name].get(system)
            if not result:
                continue
            report = result["report"]
            latency = report["latencyFromSchedule"]
            lines.append(f"| {spec[name]['placement']} | {system} | {fmt(round(report['deliveriesPerSecond']))} | "
                         f"{fmt(latency['p50'])} | {fmt(latency['p99'])} | {report['lost']} | "
                         f"{fmt(result['server_cpu_us_per_delivery'])} | {fmt(result.get('redis_cpu_us_per_delivery'))} | "
                         f"{fmt(result.get('idle_node_cpu_ms_per_s_at_rest'))} → {fmt(result.get('idle_node_cpu_ms_per_s_during_run'))}"
                         + (f" ({fmt(int(result['idle_node_events_received']))} events received)"
                            if result.get("idle_node_events_received") is not None else "") + " |")
    return lines + [""]


def many_rooms_targets(results):
    """Targets of the many-rooms scenarios: CPU per delivery ≤ 0.75 × Nchan's in both placements, and
    chat-relay's idle node no busier during the run than at rest (within one clock tick over the run)."""
    targets = []
    for name in ("many-rooms", "many-rooms-spread"):
        n, r = results.get(name, {}).get("Nchan"), results.get(name, {}).get("chat-relay")
        if not (n and r):
            continue
        rc, nc = r["server_cpu_us_per_delivery"], n["server_cpu_us_per_delivery"]
        targets.append((f"server CPU per delivery, {name}, ≤ 0.75 × Nchan", rc, nc,
                        rc is not None and nc is not None and rc <= 0.75 * nc, "µs"))
        rest, during = r.get("idle_node_cpu_ms_per_s_at_rest"), r.get("idle_node_cpu_ms_per_s_during_run")
        if rest is not None and during is not None:
            # The same work costs a little more time on a busy machine (caches, the other cores'
            # load): 10 % of tolerance.
            targets.append((f"idle node's CPU during {name} ≤ 1.1 × its CPU at rest ({rest} ms/s for chat-relay)", during,
                            n.get("idle_node_cpu_ms_per_s_during_run"), during <= 1.1 * rest, "ms/s"))
    return targets


def markdown(results, info, spec, started, measured=None):
    def value(result, *keys):
        data = result
        for key in keys:
            if data is None:
                return None
            data = data.get(key) if isinstance(data, dict) else None
        return data

    def fmt(number, unit=""):
        if number is None:
            return "–"
        if isinstance(number, float):
            number = round(number, 2) if number < 100 else round(number)
        return f"{number:,}{unit}".replace(",", " ") if isinstance(number, int) else f"{number}{unit}"

    def ratio(relay, nchan):
        if relay is None or nchan in (None, 0):
            return "–"
        return f"{relay / nchan:.2f}×"

    lines = ["# Benchmarks: chat-relay and Nchan, side by side", "",
             f"Measured {started:%Y-%m-%d %H:%M} UTC by `benchmarks/vs-nchan.sh` on one machine: {info['cpu']}, "
             f"{info['cores']} cores, {info['memory_gib']} GiB, Linux {info['kernel']}. The load generator "
             "(`chat-relay bench`) shares the cores with every server.", "",
             f"- chat-relay {info['chat_relay']}: three nodes (`chat-relay serve`, release build) on one Redis.",
             f"- Nchan {info['nchan']} ({info['nginx']}): three nginx nodes, `worker_processes auto`, on another Redis "
             "(`nchan_use_redis on`), config in `benchmarks/nchan.conf.template`.",
             f"- {info['redis']}, append-only (fsync every second), one per system.",
             "- Streams are spread evenly over the three nodes of a system, and so are the POSTs (4 keep-alive "
             "connections)" + (", but in the `-one` scenarios, where one keep-alive connection to the first node "
                               "takes every POST (the shape most apps publish in)" if "light-one" in spec or "medium-one" in spec else "")
             + ". Every subscriber is in one room, so a message is delivered to every stream.",
             "- Latency is from the moment each message was due by the publisher's schedule to its arrival "
             "(so a slow server cannot hide behind a slow publisher), measured by the same process that sends it.",
             "- Server CPU is user + system time of the three nodes and their Redis from the moment every stream "
             "is open to the end of the run, per delivery. Memory is the PSS of the three nodes with every stream "
             "open and idle, minus the same right after start, per stream (shown for the connections scenario, "
             "where it means something). Machine CPU is every busy core's time, the load generator and the "
             "kernel's softirq work included: loopback TCP's receive side often runs in ksoftirqd, charged to "
             "no server, and more so under load.", ""]
    # Scenarios of the spec the results were measured with (an older run has fewer).
    rows = [(key, f"{spec[key]['subscribers']} subscribers, {spec[key]['rate']} msg/s"
             + (", one publisher connection to one node" if spec[key].get("publish") == "one" else ""))
            for key in ("light", "medium", "light-one", "medium-one", "connections") if key in spec]
    lines += ["## Scenarios", "",
              "| scenario | system | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | lost | server CPU µs/delivery | machine CPU µs/delivery | bench CPU µs/delivery | KiB/stream |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, title in rows:
        for system in ("Nchan", "chat-relay"):
            result = results.get(key, {}).get(system)
            if not result:
                continue
            report = result["report"]
            latency = report["latencyFromSchedule"]
            lines.append(f"| {key}: {title} | {system} | {fmt(round(report['deliveriesPerSecond']))} | {fmt(latency['p50'])} | "
                         f"{fmt(latency['p90'])} | {fmt(latency['p99'])} | {fmt(latency['max'])} | {report['lost']} | "
                         f"{fmt(result['server_cpu_us_per_delivery'])} | {fmt(result.get('machine_cpu_us_per_delivery'))} | "
                         f"{fmt(report['clientCPUMicrosecondsPerDelivery'])} | "
                         f"{fmt(result['kib_per_subscriber']) if key == 'connections' else '–'} |")
    rounds = [(key, system, results[key][system]["rounds"]) for key, _ in rows for system in ("Nchan", "chat-relay")
              if results.get(key, {}).get(system, {}).get("rounds")]
    if rounds:
        counts = {}
        for key, _, runs in rounds:
            counts.setdefault(key, len(runs))
        ran = " and ".join(f"{key} {count} rounds" for key, count in counts.items())
        lines += ["", f"These ran several rounds per system ({ran}), each on freshly started servers, "
                  "alternating which system went first; their rows above give each number's median over the rounds "
                  "(lost: the sum). The rounds one by one, in the order they ran:", "",
                  "| scenario | system | p50 ms | p99 ms | server CPU µs/delivery | machine CPU µs/delivery |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for key, system, runs in rounds:
            def each(field):
                return " / ".join(fmt(run[field]) for run in runs)
            lines.append(f"| {key} | {system} | {each('p50')} | {each('p99')} | {each('server_cpu_us_per_delivery')} | "
                         f"{each('machine_cpu_us_per_delivery')} |")
    sat = results.get("saturation", {})
    for name, title, shape in (("saturation", "## Saturation", ""),
                               ("saturation-one", "### Saturation, one publisher connection",
                                " Every POST on one keep-alive connection to the first node.")):
        if name not in results:
            continue
        lines += ["", title, "",
                  f"{spec[name]['subscribers']} subscribers; the publish rate rises until p99 (from the schedule) passes "
                  f"{SATURATION_P99_MS:g} ms, a message is lost, or the publisher falls 10 % behind.{shape}", "",
                  "| system | msg/s asked | msg/s achieved | deliveries/s | p50 ms | p99 ms | lost | server CPU µs/delivery | machine CPU µs/delivery |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for system in ("Nchan", "chat-relay"):
            for step in results[name].get(system, {}).get("steps", []):
                report = step["report"]
                lines.append(f"| {system} | {step['rate']} | {fmt(report['rateAchieved'])} | {fmt(round(report['deliveriesPerSecond']))} | "
                             f"{fmt(report['latencyFromSchedule']['p50'])} | {fmt(report['latencyFromSchedule']['p99'])} | "
                             f"{report['lost']} | {fmt(step['server_cpu_us_per_delivery'])} | {fmt(step.get('machine_cpu_us_per_delivery'))} |")
    lines += ["", "![Latency against load](benchmarks/latency-vs-load.svg)", ""]
    lines += many_rooms_section(results, spec, measured or {}, fmt)
    lines += redis_cluster_section(results, spec, measured or {}, fmt)

    targets = []
    n, r = results.get("medium", {}).get("Nchan"), results.get("medium", {}).get("chat-relay")
    if n and r:
        targets.append(("server CPU per delivery, medium, ≤ 0.9 × Nchan", r["server_cpu_us_per_delivery"], n["server_cpu_us_per_delivery"],
                        r["server_cpu_us_per_delivery"] is not None and n["server_cpu_us_per_delivery"] is not None
                        and r["server_cpu_us_per_delivery"] <= 0.9 * n["server_cpu_us_per_delivery"], "µs"))
        targets.append(("p99 medium ≤ Nchan", r["report"]["latencyFromSchedule"]["p99"], n["report"]["latencyFromSchedule"]["p99"],
                        r["report"]["latencyFromSchedule"]["p99"] <= n["report"]["latencyFromSchedule"]["p99"], "ms"))
    n, r = results.get("light", {}).get("Nchan"), results.get("light", {}).get("chat-relay")
    if n and r:
        targets.append(("p50 light ≤ Nchan", r["report"]["latencyFromSchedule"]["p50"], n["report"]["latencyFromSchedule"]["p50"],
                        r["report"]["latencyFromSchedule"]["p50"] <= n["report"]["latencyFromSchedule"]["p50"], "ms"))
    n, r = results.get("medium-one", {}).get("Nchan"), results.get("medium-one", {}).get("chat-relay")
    if n and r:
        targets.append(("server CPU per delivery, medium-one, ≤ 0.9 × Nchan", r["server_cpu_us_per_delivery"], n["server_cpu_us_per_delivery"],
                        r["server_cpu_us_per_delivery"] is not None and n["server_cpu_us_per_delivery"] is not None
                        and r["server_cpu_us_per_delivery"] <= 0.9 * n["server_cpu_us_per_delivery"], "µs"))
    n, r = results.get("light-one", {}).get("Nchan"), results.get("light-one", {}).get("chat-relay")
    if n and r:
        targets.append(("p50 light-one ≤ Nchan", r["report"]["latencyFromSchedule"]["p50"], n["report"]["latencyFromSchedule"]["p50"],
                        r["report"]["latencyFromSchedule"]["p50"] <= n["report"]["latencyFromSchedule"]["p50"], "ms"))
    n, r = results.get("connections", {}).get("Nchan"), results.get("connections", {}).get("chat-relay")
    if n and r and r["kib_per_subscriber"] is not None:
        targets.append(("memory per stream ≤ 8 KB", r["kib_per_subscriber"], n["kib_per_subscriber"],
                        r["kib_per_subscriber"] * 1024 <= 8000, "KiB"))
    for name, label in (("saturation", ""), ("saturation-one", ", one publisher connection")):
        sat = results.get(name, {})
        if sat.get("Nchan") and sat.get("chat-relay"):
            ns, rs = saturation_rate(sat["Nchan"]["steps"]), saturation_rate(sat["chat-relay"]["steps"])
            met = rs is None or (ns is not None and rs >= ns)
            targets.append((f"rate where p99 passes 100 ms{label} ≥ Nchan's", rs if rs is not None else f"> {spec[name]['rates'][-1]}",
                            ns if ns is not None else f"> {spec[name]['rates'][-1]}", met, "msg/s"))
    targets += many_rooms_targets(results)
    lines += ["## Targets", "", "| target | chat-relay | Nchan | met |", "| --- | --- | --- | --- |"]
    for title, relay, nchan, met, unit in targets:
        lines.append(f"| {title} | {fmt(relay)} {unit} | {fmt(nchan)} {unit} | {'yes' if met else '**no**'} |")
    notes = ROOT / "docs" / "benchmarks" / "notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    # Written by benchmarks/soak.sh.
    soak = ROOT / "docs" / "benchmarks" / "soak.md"
    if soak.exists():
        lines += ["", soak.read_text().strip()]
    lines += ["", "## Reproduce", "", "```", "benchmarks/vs-nchan.sh            # about 15 minutes; writes this file",
              "benchmarks/vs-nchan.sh --quick    # a smoke run", "```",
              "", "Raw numbers of this run: [benchmarks/results.json](benchmarks/results.json).", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", help="the chat-relay binary (release build); needed unless --render-only")
    parser.add_argument("--quick", action="store_true", help="short runs with fewer subscribers: a smoke test")
    parser.add_argument("--scenarios", default="light,medium,light-one,medium-one,connections,saturation,saturation-one",
                        help="comma-separated subset")
    parser.add_argument("--only", choices=["Nchan", "chat-relay"], help="run one system only")
    parser.add_argument("--nchan-workers", default="auto", help="worker_processes of each Nchan node")
    parser.add_argument("--output", default=str(ROOT / "docs"), help="where BENCHMARKS.md and benchmarks/ go")
    parser.add_argument("--work", default=str(ROOT / ".bench"), help="scratch folder for server logs and data")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other scenarios' results of the output's results.json and replace only those run now")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: write BENCHMARKS.md and the plot again from the output's results.json "
                             "(after editing docs/benchmarks/notes.md)")
    args = parser.parse_args()
    output = pathlib.Path(args.output)
    if args.render_only:
        saved = json.loads((output / "benchmarks" / "results.json").read_text())
        started = datetime.datetime.fromisoformat(saved["started"])
        svg_plot(saved["results"], output / "benchmarks" / "latency-vs-load.svg")
        (output / "BENCHMARKS.md").write_text(markdown(saved["results"], saved["machine"], saved["scenarios"], started,
                                                        saved.get("measured")))
        return
    if not args.relay:
        parser.error("--relay is required")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536), max(hard, 65536)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    spec = QUICK if args.quick else SCENARIOS
    work = pathlib.Path(args.work)
    systems = []
    if args.only != "chat-relay":
        systems.append(Nchan(work / "nchan", args.nchan_workers))
    if args.only != "Nchan":
        systems.append(Relay(work / "relay", args.relay))
    started = datetime.datetime.now(datetime.timezone.utc)
    results, measured = {}, {}
    saved = None
    if args.merge and (output / "benchmarks" / "results.json").exists():
        saved = json.loads((output / "benchmarks" / "results.json").read_text())
        results, measured = saved["results"], saved.get("measured", {})
        spec = saved["scenarios"] | {name: spec[name] for name in args.scenarios.split(",")}
    try:
        for name in args.scenarios.split(","):
            results[name] = run_scenario(name, spec[name], systems, args.relay)
            measured[name] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    finally:
        for system in systems:
            system.stop()
    info = saved["machine"] if saved else machine()
    if saved:
        started = datetime.datetime.fromisoformat(saved["started"])
    (output / "benchmarks").mkdir(parents=True, exist_ok=True)
    (output / "benchmarks" / "results.json").write_text(json.dumps(
        {"started": started.isoformat(), "machine": info, "quick": args.quick, "scenarios": spec, "results": results,
         "measured": measured}, indent=1) + "\n")
    svg_plot(results, output / "benchmarks" / "latency-vs-load.svg")
    (output / "BENCHMARKS.md").write_text(markdown(results, info, spec, started, measured))
    log(f"wrote {output / 'BENCHMARKS.md'}")
    unclean = [f"{scenario}/{system}" for scenario, data in results.items() for system, result in data.items()
               if not scenario.startswith("saturation") and result["exit"] != 0]
    if unclean:
        log(f"runs that lost, duplicated or reordered messages, or had streams refused: {', '.join(unclean)}")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# What --auth jwt costs a POST: one node (release build, embedded broker, no rate limit), wrk with
# benchmarks/publish.lua on kept-alive connections, with no token (--auth none), an HS256 token
# and an ES256 token (each the same token on every request, as a client posts with its token).
# Prints a Markdown table: POSTs/s and latency per mode, each the median of three runs.
#
#   benchmarks/auth-cost.sh                   # 64 connections, 10 s a run
#   CONNECTIONS=8 DURATION=5 benchmarks/auth-cost.sh
#
# CHAT_RELAY_BIN=path uses that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scripts/install-packages.sh wrk openssl curl
if [ -z "${CHAT_RELAY_BIN:-}" ]; then
  swift build -c release --product chat-relay >&2
  CHAT_RELAY_BIN="$(swift build -c release --show-bin-path)/chat-relay"
fi
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-10}"
work="$(mktemp -d)"
trap 'kill "${node:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
head -c 64 /dev/urandom | base64 -w0 > "$work/secret"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ec.pem" 2>/dev/null
openssl pkey -in "$work/ec.pem" -pubout -out "$work/ec.pub"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

run_mode() { # mode, node flags..., then wrk's extra arguments after --
  local mode="$1"; shift
  local flags=() extra=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do flags+=("$1"); shift; done
  [ "$#" -gt 0 ] && shift
  extra=("$@")
  "$CHAT_RELAY_BIN" serve --host 127.0.0.1 --port "$port" --rate-limit 0 --log-level warning "${flags[@]}" &
  node=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null 2>&1 && break; sleep 0.1; done
  wrk -t1 -c8 -d2s -s benchmarks/publish.lua "${extra[@]}" "http://127.0.0.1:$port/rooms/bench/messages" >/dev/null # warm-up
  for round in 1 2 3; do
    wrk -t"$(( CONNECTIONS < 2 ? 1 : 2 ))" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s benchmarks/publish.lua "${extra[@]}" \
      "http://127.0.0.1:$port/rooms/bench/messages" > "$work/$mode-$round.txt"
  done
  kill "$node"; wait "$node" 2>/dev/null || true
  python3 - "$mode" "$work" <<'PY'
import re, sys, statistics
mode, work = sys.argv[1], sys.argv[2]
def ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
rates, means, p99s, non2xx = [], [], [], 0
for round in (1, 2, 3):
    text = open(f"{work}/{mode}-{round}.txt").read()
    rates.append(float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)))
    means.append(ms(re.search(r"Latency\s+(\S+)", text).group(1)))
    p99s.append(ms(re.search(r"99%\s+(\S+)", text).group(1)))
    found = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non2xx += int(found.group(1)) if found else 0
print(f"| {mode} | {statistics.median(rates):,.0f} | {statistics.median(means):.2f} ms | {statistics.median(p99s):.2f} ms | "
      f"{' / '.join(f'{r:,.0f}' for r in rates)} | {non2xx} |")
PY
}

hs256=$("$CHAT_RELAY_BIN" token --jwt-secret-file "$work/secret" --sub bench --publish '*' --ttl 1h)
es256=$("$CHAT_RELAY_BIN" token --jwt-private-key-file "$work/ec.pem" --sub bench --publish '*' --ttl 1h)
echo "| auth | POSTs/s | mean latency | p99 | runs (POSTs/s) | non-2xx |"
echo "| --- | --- | --- | --- | --- | --- |"
run_mode none
run_mode "jwt HS256" --auth jwt --jwt-secret-file "$work/secret" -- -H "Authorization: Bearer $hs256"
run_mode "jwt ES256" --auth jwt --jwt-public-key-file "$work/ec.pub" -- -H "Authorization: Bearer $es256"

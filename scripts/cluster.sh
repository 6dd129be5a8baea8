#!/usr/bin/env bash
# `make cluster`: the deployment topology on one machine, without Docker — a redis-server, three
# relay nodes and nginx (deploy/nginx.conf, addresses substituted) on loopback. `make cluster-stop`
# stops it. The relays listen on 127.0.0.2-4 behind one DNS name, as compose replicas do.
# REDIS_MODE=cluster (`make redis-cluster`): a Redis Cluster of three masters and three replicas
# (ports REDIS_PORT+1 to +6) instead of one redis-server.
#   scripts/cluster.sh start|stop|status
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.cluster"
bin=${CHAT_RELAY_BIN:-$(cd "$root" && swift build --show-bin-path)/chat-relay}
LB_PORT=${LB_PORT:-8080}
RELAY_PORT=${RELAY_PORT:-8090}
REDIS_PORT=${REDIS_PORT:-6390}
DNS_PORT=${DNS_PORT:-5390}
REDIS_MODE=${REDIS_MODE:-single}
replicas=(127.0.0.2 127.0.0.3 127.0.0.4)

stop() {
  [ -d "$state" ] || { echo "no cluster running"; return 0; }
  for pidfile in "$state"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    # TERM first: relays drain, nginx and redis shut down cleanly.
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pidfile in "$state"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
  echo "cluster stopped (logs kept in $state)"
}

wait_http() {  # url, name
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not come up; see $state" >&2
  return 1
}

start() {
  [ -x "$bin" ] || { echo "no chat-relay binary at $bin: run make build" >&2; exit 1; }
  if ls "$state"/*.pid >/dev/null 2>&1; then echo "a cluster is already running: make cluster-stop" >&2; exit 1; fi
  mkdir -p "$state/redis" "$state/nginx/logs"
  local redis_url="redis://127.0.0.1:$REDIS_PORT"
  if [ "$REDIS_MODE" = cluster ]; then
    local ports=() addresses=()
    for offset in 1 2 3 4 5 6; do
      local port=$((REDIS_PORT + offset))
      ports+=("$port"); addresses+=("127.0.0.1:$port")
      mkdir -p "$state/redis/$port"
      redis-server --port "$port" --bind 127.0.0.1 --dir "$state/redis/$port" --appendonly yes --save "" \
        --cluster-enabled yes --cluster-node-timeout 2000 --daemonize no --logfile "$state/redis-$port.log" \
        > /dev/null 2>&1 & echo $! > "$state/redis-$port.pid"
    done
    for port in "${ports[@]}"; do
      for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    done
    redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes > "$state/redis-cluster-create.log" 2>&1
    for _ in $(seq 1 100); do
      redis-cli -p "${ports[0]}" cluster info | grep -q cluster_state:ok && break
      sleep 0.1
    done
    redis_url="redis://${addresses[0]},${addresses[1]},${addresses[2]}"
  else
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$state/redis" --appendonly yes --save "" \
      --daemonize no --logfile "$state/redis.log" > /dev/null 2>&1 & echo $! > "$state/redis.pid"
  fi
  python3 "$root/scripts/loopback-dns.py" --port "$DNS_PORT" --name "relay.cluster=$(IFS=,; echo "${replicas[*]}")" \
    > "$state/dns.log" 2>&1 & echo $! > "$state/dns.pid"
  [ "$REDIS_MODE" = cluster ] || for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  for index in "${!replicas[@]}"; do
    "$bin" serve --host "${replicas[$index]}" --port "$RELAY_PORT" --node-id "relay-$((index + 1))" \
      --redis-url "$redis_url" --trusted-proxies 127.0.0.1 \
      > "$state/relay-$((index + 1)).log" 2>&1 & echo $! > "$state/relay-$((index + 1)).pid"
  done
  for address in "${replicas[@]}"; do wait_http "http://$address:$RELAY_PORT/health/ready" "relay on $address"; done
  "$root/scripts/proxy-config.sh" nginx "$DNS_PORT" "relay.cluster:$RELAY_PORT" "$LB_PORT" > "$state/nginx/nginx.conf"
  nginx -p "$state/nginx" -c "$state/nginx/nginx.conf" -g "pid $state/nginx/nginx.pid; daemon off; master_process off;" \
    > "$state/nginx.log" 2>&1 & echo $! > "$state/nginx.pid"
  wait_http "http://127.0.0.1:$LB_PORT/health/ready" "nginx"
  echo
  echo "chat-relay cluster: 3 relays (127.0.0.2-4:$RELAY_PORT) on $redis_url, behind nginx"
  echo "open http://localhost:$LB_PORT   (logs in $state; stop with: make cluster-stop)"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) ls "$state"/*.pid 2>/dev/null | sed 's#.*/##' || echo "no cluster running" ;;
  *) echo "usage: cluster.sh start|stop|status" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Prints deploy/nginx.conf or deploy/haproxy.cfg with only the addresses substituted, for running
# the shipped config outside compose (tests, `make cluster`):
#   proxy-config.sh nginx|haproxy DNS_PORT REPLICAS(name:port) LISTEN_PORT
# Fails if the shipped file no longer has a line this substitutes, so the two cannot drift apart.
set -euo pipefail
kind=$1 dns_port=$2 replicas=$3 listen_port=$4
root=$(cd "$(dirname "$0")/.." && pwd)
substitute() {  # file, then pairs of literal "from" "to"
  local text
  text=$(cat "$1")
  shift
  while [ $# -gt 0 ]; do
    if [[ "$text" != *"$1"* ]]; then echo "proxy-config.sh: the shipped config no longer contains: $1" >&2; exit 1; fi
    text=${text//"$1"/"$2"}
    shift 2
  done
  printf '%s\n' "$text"
}
case "$kind" in
  nginx)
    substitute "$root/deploy/nginx.conf" \
      "resolver 127.0.0.11 " "resolver 127.0.0.1:$dns_port " \
      "set \$relay_upstream relay:8080;" "set \$relay_upstream $replicas;" \
      "listen 8080;" "listen 127.0.0.1:$listen_port;" ;;
  haproxy)
    substitute "$root/deploy/haproxy.cfg" \
      "nameserver dns 127.0.0.11:53" "nameserver dns 127.0.0.1:$dns_port" \
      "server-template relay 10 relay:8080" "server-template relay 10 $replicas" \
      "bind :8080" "bind 127.0.0.1:$listen_port" ;;
  *) echo "usage: proxy-config.sh nginx|haproxy DNS_PORT REPLICAS LISTEN_PORT" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A soak run: three chat-relay nodes on one Redis under stream churn, traffic and abuse for 30
# minutes, memory and descriptors sampled every 10 s; writes docs/benchmarks/soak.{md,svg,json}
# and renders docs/BENCHMARKS.md again with it. Installs what is missing and builds the release
# binary first.
#
#   benchmarks/soak.sh                  # 30 minutes
#   benchmarks/soak.sh --minutes 5      # a shorter one
#   benchmarks/soak.sh --help           # every option
#
# CHAT_RELAY_BIN=path uses that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scripts/install-packages.sh libhiredis-dev pkg-config redis-server python3
if [ -z "${CHAT_RELAY_BIN:-}" ]; then
  swift build -c release --product chat-relay >&2
  CHAT_RELAY_BIN="$(swift build -c release --show-bin-path)/chat-relay"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 benchmarks/soak.py --relay "$CHAT_RELAY_BIN" "$@"

#!/usr/bin/env bash
# chat-relay against Nchan, side by side, on this machine: installs what is missing (nginx,
# libnginx-mod-nchan, redis-server), builds the release binary, then runs benchmarks/vs_nchan.py,
# which starts three Nchan nodes and three relay nodes (each trio on its own Redis), drives both
# with `chat-relay bench`, and writes docs/BENCHMARKS.md and docs/benchmarks/.
#
#   benchmarks/vs-nchan.sh              # every scenario, about 15 minutes
#   benchmarks/vs-nchan.sh --quick      # a short smoke run of every scenario
#   benchmarks/vs-nchan.sh --help       # scenarios and options
#
# CHAT_RELAY_BIN=path uses that binary instead of building one (the test suite's smoke run does).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scripts/install-packages.sh libhiredis-dev pkg-config nginx libnginx-mod-nchan redis-server python3
if [ -z "${CHAT_RELAY_BIN:-}" ]; then
  swift build -c release --product chat-relay >&2
  CHAT_RELAY_BIN="$(swift build -c release --show-bin-path)/chat-relay"
fi
exec python3 benchmarks/vs_nchan.py --relay "$CHAT_RELAY_BIN" "$@"

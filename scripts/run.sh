#!/usr/bin/env bash
# From a fresh Debian 12 machine to a running service: installs what is
# missing (scripts/install-deps.sh), builds, and runs `affinity serve` on its
# embedded default (a private PostgreSQL in the data directory) unless
# DATABASE_URL is set. Extra arguments go to `affinity serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --locked
exec target/release/affinity serve "$@"

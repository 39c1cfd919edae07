#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is
# missing (scripts/install-deps.sh), checks formatting and lints, then runs
# every test. Each test starts its own throwaway PostgreSQL cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Timeouts and parallelism: .config/nextest.toml.
cargo nextest run --workspace --locked "$@"

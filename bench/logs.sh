#!/usr/bin/env bash
# Builds homebase and the logging benchmark in release mode, then measures the throughput cost
# of one log line per request and the time to read the newest 1,000 of 1,000,000 stored lines.
# Arguments go to the harness: bench/logs.sh --duration 5, bench/logs.sh --lines 200000
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo build --release --manifest-path "$root/Cargo.toml" -p homebase-cli -p homebase-bench
exec "$target/release/logs" --homebase "$target/release/homebase" "$@"

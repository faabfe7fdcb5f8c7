#!/usr/bin/env bash
# Builds homebase and the benchmark in release mode, then runs the benchmark against
# bench/fixture. Arguments go to the harness: bench/run.sh --duration 5, bench/run.sh --json, …
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo build --release --manifest-path "$root/Cargo.toml" -p homebase-cli -p homebase-bench
exec "$target/release/homebase-bench" \
  --homebase "$target/release/homebase" \
  --fixture "$root/bench/fixture" \
  "$@"

#!/usr/bin/env bash
# Builds homebase and the nodes benchmark in release mode, then compares SQLite and PostgreSQL
# (deploy latency, warm invoke throughput) and times a deploy through one node until another
# node answers with it. Needs PostgreSQL (default postgres://postgres@127.0.0.1:5432/test) and
# wrk or oha. Arguments go to the harness: bench/nodes.sh --duration 5 --postgres postgres://…
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo build --release --manifest-path "$root/Cargo.toml" -p homebase-cli -p homebase-bench
exec "$target/release/nodes" --homebase "$target/release/homebase" "$@"

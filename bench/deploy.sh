#!/usr/bin/env bash
# Builds homebase and the deploy benchmark in release mode, then times deploying a generated
# project to `homebase serve` with Homebase's CLI and the official base44 CLI, cold and warm.
# Arguments go to the harness: bench/deploy.sh --functions 50
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo build --release --manifest-path "$root/Cargo.toml" -p homebase-cli -p homebase-bench
exec "$target/release/deploy" --homebase "$target/release/homebase" "$@"

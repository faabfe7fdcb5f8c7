#!/usr/bin/env bash
# CPU time Homebase spends per request (its own process; Deno and wrk not counted): a steadier
# figure than throughput on a small, shared machine, for before/after comparisons of the
# request path. Usage: bench/cpu-per-request.sh [HOMEBASE_BINARY] [RUNS]
# Needs wrk. Prints a Markdown table, one row per run, and the median.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-}"
runs="${2:-3}"
if [ -z "$bin" ]; then
  cargo build --release --manifest-path "$root/Cargo.toml" -p homebase-cli >&2
  bin="${CARGO_TARGET_DIR:-$root/target}/release/homebase"
fi
out="$(mktemp)"
trap 'rm -f "$out"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT
tck="$(getconf CLK_TCK)"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "| run | requests | CPU µs per request |"
echo "|---:|---:|---:|"
results=()
for run in $(seq "$runs"); do
  : > "$out"
  "$bin" --json dev "$root/bench/fixture" --port 0 > "$out" 2>/dev/null &
  pid=$!
  url=""
  while [ -z "$url" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "homebase exited early" >&2; exit 1; }
    url="$(grep -o '"url":"[^"]*"' "$out" | head -n 1 | cut -d'"' -f4 || true)"
  done
  wrk -t1 -c10 -d2s "$url/functions/hello" > /dev/null   # warm: worker started, pools filled
  before="$(cpu "$pid")"
  requests="$(wrk -t2 -c50 -d5s "$url/functions/hello" | awk '/requests in/ {print $1}')"
  after="$(cpu "$pid")"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  us="$(echo "scale=1; ($after - $before) * 1000000 / $tck / $requests" | bc)"
  results+=("$us")
  echo "| $run | $requests | $us |"
done
median="$(printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
echo "| **median** | | **$median** |"

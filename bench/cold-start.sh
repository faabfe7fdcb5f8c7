#!/usr/bin/env bash
# Cold starts of a function worker with the network open (`function-net-allow = "*"`, dev's
# default) and restricted (none allowed, serve's default), for three kinds of function: plain
# (no npm), an npm package without the SDK, and the official SDK. Each cold start is the first
# request to a fresh worker (the idle stop is 100 ms, so every request after a pause starts one);
# the figure is Homebase's own `invocation: … in X ms (cold start, …)` line: from the request to
# the end of its response, the worker's start included.
# Usage: bench/cold-start.sh [HOMEBASE_BINARY] [RUNS]   (default: a release build, 15 runs)
# Deno is HOMEBASE_DENO, else what Homebase finds. Prints a Markdown table of medians.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-}"
runs="${2:-15}"
if [ -z "$bin" ]; then
  cargo build --release --manifest-path "$root/Cargo.toml" -p homebase-cli >&2
  bin="${CARGO_TARGET_DIR:-$root/target}/release/homebase"
fi
project="$(mktemp -d)"
out="$(mktemp)"
trap 'rm -rf "$project" "$out"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT
mkdir -p "$project/base44/functions/"{plain,npm,sdk}
echo '{ "name": "cold-start" }' > "$project/base44/config.jsonc"
echo 'Deno.serve(() => new Response("hello"));' > "$project/base44/functions/plain/entry.ts"
echo 'import ms from "npm:ms@2.1.3"; Deno.serve(() => new Response(ms(1000)));' \
  > "$project/base44/functions/npm/entry.ts"
printf '%s\n' 'import { createClientFromRequest } from "npm:@base44/sdk@0.8.50";' \
  'Deno.serve((req) => { createClientFromRequest(req); return new Response("sdk"); });' \
  > "$project/base44/functions/sdk/entry.ts"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| function | network | cold request, median ms | runs |"
echo "|---|---|---:|---:|"
for network in open restricted; do
  : > "$out"
  if [ "$network" = open ]; then allow='*'; else allow=''; fi
  HOMEBASE_FUNCTION_NET_ALLOW="$allow" "$bin" --json dev "$project" --port 0 --idle-timeout 100ms > "$out" 2>/dev/null &
  pid=$!
  url=""
  while [ -z "$url" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "homebase exited early" >&2; exit 1; }
    url="$(grep -o '"url":"[^"]*"' "$out" | head -n 1 | cut -d'"' -f4 || true)"
  done
  for function in plain npm sdk; do
    curl -sf "$url/functions/$function" > /dev/null # the first start fills Deno's caches: not counted
    for _ in $(seq "$runs"); do
      sleep 0.4 # past the idle stop: the next request starts a new worker
      curl -sf "$url/functions/$function" > /dev/null
    done
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  for function in plain npm sdk; do
    times="$(grep "\"function\":\"$function\"" "$out" | grep -o 'invocation: 200 in [0-9.]* ms (cold start' \
      | awk '{print $4}' | tail -n "$runs")"
    echo "| $function | $network | $(echo "$times" | median) | $(echo "$times" | wc -l) |"
  done
done

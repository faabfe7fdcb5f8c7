#!/usr/bin/env bash
# CPU time Homebase spends per request (its own process; Deno and wrk not counted): a steadier
# figure than throughput on a small, shared machine, for before/after comparisons of the
# request path. Usage: bench/cpu-per-request.sh [HOMEBASE_BINARY] [RUNS]
# Needs wrk. Prints a Markdown table, one row per run, and the median.
# BEARER=1: load /api/apps/{app}/functions/hello as a signed-in app user (a user token on every
# request: its verification and the user's sign-in state) instead of the anonymous webhook
# route; also needs curl.
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
  target="$url/functions/hello"
  auth=()
  if [ -n "${BEARER:-}" ]; then
    # This run's key and app id, from the file `homebase dev` writes once it serves.
    dev="$root/bench/fixture/base44/.homebase/dev.json"
    for _ in $(seq 500); do grep -q "\"$url\"" "$dev" 2>/dev/null && break; sleep 0.01; done
    key="$(grep -o '"key": *"[^"]*"' "$dev" | cut -d'"' -f4)"
    app="$(grep -o '"app_id": *"[^"]*"' "$dev" | cut -d'"' -f4)"
    curl -s -o /dev/null -X POST -H "api_key: $key" -H 'content-type: application/json' \
      -d '{"email":"bench@example.test","password":"bench-password"}' "$url/api/apps/$app/users"
    token="$(curl -sf -H "api_key: $key" "$url/api/apps/$app/auth/token?user=bench@example.test" \
      | grep -o '"token": *"[^"]*"' | cut -d'"' -f4)"
    [ -n "$token" ] || { echo "could not get a user token" >&2; exit 1; }
    target="$url/api/apps/$app/functions/hello"
    auth=(-H "Authorization: Bearer $token")
    [ "$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$target")" = 200 ] || { echo "the token is refused" >&2; exit 1; }
  fi
  wrk -t1 -c10 -d2s "${auth[@]}" "$target" > /dev/null   # warm: worker started, pools filled
  before="$(cpu "$pid")"
  requests="$(wrk -t2 -c50 -d5s "${auth[@]}" "$target" | awk '/requests in/ {print $1}')"
  after="$(cpu "$pid")"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  us="$(echo "scale=1; ($after - $before) * 1000000 / $tck / $requests" | bc)"
  results+=("$us")
  echo "| $run | $requests | $us |"
done
median="$(printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
echo "| **median** | | **$median** |"

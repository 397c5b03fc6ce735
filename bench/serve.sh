#!/usr/bin/env bash
# The gate-server benchmark: `airlock serve` answering /gate under a
# fixed load of R requests/s from oha, a second process on loopback. Reports
# throughput, p50/p99/max latency (corrected for coordinated omission), errors
# and the server's peak memory (VmHWM), for:
#   - PostgreSQL with the default freshness (--max-age 250ms: requests share reads)
#   - PostgreSQL with --max-age 0 (every request waits for a read that started after it)
#   - SQLite with the default freshness
#
# Usage: scripts/test bench/serve.sh [SECONDS] [RATE]   (defaults: 30 s at 1000/s)
# Needs: oha (`cargo install oha`); missing, the script says so and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
SECS=${1:-30}
RATE=${2:-1000}
: "${AIRLOCK_TEST_POSTGRES_URL:?run through scripts/test}"
command -v oha >/dev/null || { echo "bench/serve.sh: oha is not installed: cargo install oha" >&2; exit 1; }

cargo build -q --release -p airlock-cli
AIRLOCK=$PWD/target/release/airlock
work=$(mktemp -d /tmp/airlock-bench-serve.XXXXXX)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

# 100 migrations, all applied: a realistic history to read on every assessment.
mkdir -p "$work/migrations"
for i in $(seq 1 100); do
  printf 'CREATE TABLE t_%d (id bigint primary key, v text);\n' "$i" > "$work/migrations/$(printf '%05d' "$i")_t_$i.up.sql"
done
pg_admin=$AIRLOCK_TEST_POSTGRES_URL
psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS bench_serve WITH (FORCE)" -c "CREATE DATABASE bench_serve" >/dev/null
pg_url="${pg_admin%/*}/bench_serve?sslmode=disable"
sqlite_url="sqlite:$work/bench.db"
for url in "$pg_url" "$sqlite_url"; do
  "$AIRLOCK" --database-url "$url" --dir "$work/migrations" migrate >/dev/null
done

run() {
  local label=$1 url=$2; shift 2
  "$AIRLOCK" --database-url "$url" --dir "$work/migrations" serve --listen 127.0.0.1:0 "$@" 2>"$work/serve.err" &
  server=$!
  local addr
  addr=$(listening_address "$work/serve.err") || exit 1
  curl -sf "http://$addr/gate?require=latest" >/dev/null || { echo "the gate is not open on $label" >&2; exit 1; }
  oha -z "${SECS}s" -q "$RATE" --latency-correction -c 50 --no-tui --output-format json \
    "http://$addr/gate?require=latest" > "$work/oha.json"
  local hwm
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
  kill "$server"; wait "$server" 2>/dev/null || true; server=
  python3 - "$label" "$work/oha.json" "$hwm" <<'PY'
import json, sys
label, path, hwm_kb = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = json.load(open(path))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
kinds = dict(r.get("errorDistribution", {}))
kinds.update({f"HTTP {c}": n for c, n in codes.items() if c != "200"})
# oha cuts off the requests still in flight when the duration ends; they never reached an answer.
cut = {k: n for k, n in kinds.items() if "deadline" in k}
errors = sum(n for k, n in kinds.items() if k not in cut)
if kinds:
    print(f"{label}: {kinds}", file=sys.stderr)
print(f"| {label} | {s['requestsPerSec']:,.0f} | {p['p50']*1000:.2f} | {p['p99']*1000:.2f} | {s['slowest']*1000:.1f} | {errors} | {sum(cut.values())} | {hwm_kb/1024:.1f} |")
PY
}

echo "oha: ${SECS} s at ${RATE} requests/s, 50 connections, GET /gate?require=latest (100 applied migrations)"
echo
echo "| server | requests/s | p50 (ms) | p99 (ms) | max (ms) | errors | in flight at the end | peak RSS (MB) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
run "PostgreSQL, --max-age 250ms (default)" "$pg_url"
run "PostgreSQL, --max-age 0" "$pg_url" --max-age 0
run "SQLite, --max-age 250ms (default)" "$sqlite_url"

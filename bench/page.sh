#!/usr/bin/env bash
# The page benchmark: `airlock serve` over 5 environments, each a database
# with 1,000 applied migrations and one pending (so each page also carries a
# plan), answering a fixed load of RATE requests/s (50 by default) for SECS
# seconds from a second process on loopback. The requests cycle through the
# overview (`/`), each environment's page, its page with all 1,000 applied
# migrations (`?applied=all`) and a migration's page. Latency is measured
# from when each request was due (an open loop: a slow answer delays no
# later request, and counts for the ones queued behind it). Reports p50,
# p99 and max, errors, and the server's peak memory (VmHWM).
# Targets: p99 under 50 ms, peak memory under 50 MB.
#
# Runs on SQLite files (no server needed) and, through `scripts/test`, on
# PostgreSQL databases as well.
#
# Usage: bench/page.sh [SECS] [RATE]        or: scripts/test bench/page.sh [SECS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
SECS=${1:-30}
RATE=${2:-50}
ENVS=5
MIGRATIONS=1000

cargo build -q --release -p airlock-cli
AIRLOCK=$PWD/target/release/airlock
work=$(mktemp -d /tmp/airlock-bench-page.XXXXXX)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

mkdir -p "$work/migrations"
for i in $(seq 1 "$MIGRATIONS"); do
  printf 'CREATE TABLE t_%d (id bigint primary key, v text);\n' "$i" > "$work/migrations/$(printf '%05d' "$i")_t_$i.up.sql"
done
pending="$work/migrations/$(printf '%05d' $((MIGRATIONS + 1)))_index_t_1.up.sql"

# ENVS databases at version MIGRATIONS; then one migration more, pending everywhere.
setup() {
  local config=$1; shift
  : > "$config"
  local n=0
  for url in "$@"; do
    n=$((n + 1))
    "$AIRLOCK" --database-url "$url" --dir "$work/migrations" migrate >/dev/null
    printf '[environments.env%d]\nurl = "%s"\n' "$n" "$url" >> "$config"
  done
}

run() {
  local label=$1 config=$2
  printf 'CREATE INDEX t_1_v ON t_1 (v);\n' > "$pending"
  "$AIRLOCK" --config "$config" --dir "$work/migrations" serve --listen 127.0.0.1:0 2>"$work/serve.err" &
  server=$!
  local addr
  addr=$(listening_address "$work/serve.err") || exit 1
  python3 - "$label" "$addr" "$SECS" "$RATE" "$ENVS" "$MIGRATIONS" "$server" <<'PY'
import http.client, queue, sys, threading, time

label, addr, secs, rate, envs, migrations, pid = sys.argv[1:8]
secs, rate, envs, migrations = float(secs), float(rate), int(envs), int(migrations)
host, port = addr.rsplit(":", 1)
paths = ["/"]
for e in range(1, envs + 1):
    paths += [f"/env/env{e}", f"/env/env{e}?applied=all", f"/env/env{e}/migrations/{migrations // 2}", f"/env/env{e}/migrations/{migrations + 1}"]

def get(conn, path):
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    return response.status, body

# Warm up: every page once (the plans of the pending migration are made here).
conn = http.client.HTTPConnection(host, int(port), timeout=60)
for path in paths:
    status, body = get(conn, path)
    if status != 200:
        sys.exit(f"{path}: {status}: {body[:300]!r}")
    if path.endswith(f"/migrations/{migrations + 1}") and b"planning" in body:
        time.sleep(2)
conn.close()

due = queue.Queue()
latencies, errors, lock = [], [], threading.Lock()
by_kind = {}

def kind(path):
    if path == "/":
        return "/"
    if "applied=all" in path:
        return "/env/E?applied=all"
    if path.endswith(f"/migrations/{migrations + 1}"):
        return "/env/E/migrations/pending"
    if "/migrations/" in path:
        return "/env/E/migrations/applied"
    return "/env/E"

def worker():
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    while True:
        item = due.get()
        if item is None:
            return
        at, path = item
        delay = at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        try:
            status, _ = get(conn, path)
            ok = status == 200
        except Exception as e:  # a dropped connection is an error, and a new one is opened
            ok = False
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
        took = time.perf_counter() - at
        with lock:
            (latencies if ok else errors).append(took)
            if ok:
                by_kind.setdefault(kind(path), []).append(took)

threads = [threading.Thread(target=worker) for _ in range(16)]
for t in threads:
    t.start()
start = time.perf_counter() + 0.5
count = int(secs * rate)
for i in range(count):
    due.put((start + i / rate, paths[i % len(paths)]))
for _ in threads:
    due.put(None)
for t in threads:
    t.join()
hwm = 0
for line in open(f"/proc/{pid}/status"):
    if line.startswith("VmHWM:"):
        hwm = int(line.split()[1])
latencies.sort()
def pct(p):
    return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000
print(f"| {label} | {len(latencies) + len(errors)} | {pct(50):.1f} | {pct(99):.1f} | {latencies[-1] * 1000:.1f} | {len(errors)} | {hwm / 1024:.1f} |")
for k, values in sorted(by_kind.items()):
    values.sort()
    p99 = values[min(len(values) - 1, int(0.99 * len(values)))] * 1000
    print(f"|   {k} | {len(values)} | {values[len(values) // 2] * 1000:.1f} | {p99:.1f} | {values[-1] * 1000:.1f} | | |")
PY
  kill "$server"; wait "$server" 2>/dev/null || true; server=
}

echo "$ENVS environments x $MIGRATIONS applied migrations (+1 pending each), ${SECS} s at ${RATE} requests/s cycling through the overview, environment and migration pages"
echo
echo "| databases | requests | p50 (ms) | p99 (ms) | max (ms) | errors | peak RSS (MB) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
sqlite_urls=()
for e in $(seq 1 "$ENVS"); do sqlite_urls+=("sqlite:$work/env$e.db"); done
setup "$work/sqlite.toml" "${sqlite_urls[@]}"
run "SQLite" "$work/sqlite.toml"
if [ -n "${AIRLOCK_TEST_POSTGRES_URL:-}" ]; then
  pg_urls=()
  for e in $(seq 1 "$ENVS"); do
    psql -q "$AIRLOCK_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS bench_page_$e WITH (FORCE)" -c "CREATE DATABASE bench_page_$e" >/dev/null
    pg_urls+=("${AIRLOCK_TEST_POSTGRES_URL%/*}/bench_page_$e?sslmode=disable")
  done
  rm -f "$pending"
  setup "$work/postgres.toml" "${pg_urls[@]}"
  run "PostgreSQL" "$work/postgres.toml"
fi

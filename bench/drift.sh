#!/usr/bin/env bash
# The drift benchmark: `airlock drift --against-url` between two PostgreSQL
# databases of N tables each (a primary key, a default, a CHECK, a foreign
# key and a partial index per table): two schema snapshots read at once,
# then their diff. Targets: a snapshot of 1,000 tables under 1 s, the diff
# under 100 ms (the whole run is both snapshots and the diff).
#
# Usage: scripts/test bench/drift.sh [N]     (the harness provides the server)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
. bench/common.sh
bench_setup drift

admin=$AIRLOCK_TEST_POSTGRES_URL
url() { echo "${admin%/*}/$1?sslmode=disable"; }
python3 - "$N" > "$work/schema.sql" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    fk = f", p bigint REFERENCES t{i - 1} (id)" if i else ""
    print(f"CREATE TABLE t{i} (id bigint PRIMARY KEY, a text NOT NULL DEFAULT 'x', b int CHECK (b > 0), created timestamptz DEFAULT now(){fk});")
    print(f"CREATE INDEX t{i}_a ON t{i} (a) WHERE b > 1;")
PY
for db in bench_drift_a bench_drift_b; do
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  psql -q "$(url $db)" -f "$work/schema.sql" >/dev/null
done
objects=$("$AIRLOCK" --database-url "$(url bench_drift_a)" --dir "$work/migrations" --format json drift --against-url "$(url bench_drift_b)" >/dev/null; psql -Atq "$(url bench_drift_a)" -c "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'")
hyperfine -N --warmup 2 --runs 15 --export-json "$work/drift.json" \
  "$AIRLOCK --database-url $(url bench_drift_a) --dir $work/migrations drift --against-url $(url bench_drift_b)" >&2
median=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(round(r["median"]*1000, 1), round(r["user"]*1000, 1))' "$work/drift.json")
cat <<EOT
Drift benchmark: two PostgreSQL databases of $N tables ($objects relations each), $(psql -Atq "$admin" -c 'SHOW server_version' | cut -d' ' -f1)
machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo)
airlock drift (both snapshots at once, then the diff): median ${median% *} ms, user CPU ${median#* } ms
EOT
for db in bench_drift_a bench_drift_b; do psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" >/dev/null; done

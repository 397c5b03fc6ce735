#!/usr/bin/env bash
# The plan benchmark, on the harness's PostgreSQL:
#   (1) the foreign-key-orphans check on a ROWS-row `orders` table with 1 %
#       orphans, beside a hand-written anti-join run by psql in the same run
#       (target: within 1.2×);
#   (2) plan's estimates for CREATE INDEX and for a table-rewriting ALTER
#       against their real durations (target: within 2× either way), from
#       each source of rates: the built-in defaults, `airlock calibrate`
#       (200,000-row scratch table), and history (the timings airlock
#       recorded applying the same kinds of work on another column).
#
# Usage: scripts/test bench/plan.sh [ROWS]     (default 5,000,000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-5000000}
: "${AIRLOCK_TEST_POSTGRES_URL:?run through scripts/test}"
cargo build -q --release -p airlock-cli
AIRLOCK=$PWD/target/release/airlock
work=$(mktemp -d /tmp/airlock-bench-plan.XXXXXX)
trap 'rm -rf "$work"' EXIT
admin=$AIRLOCK_TEST_POSTGRES_URL
psql -q "$admin" -c "DROP DATABASE IF EXISTS bench_plan WITH (FORCE)" -c "CREATE DATABASE bench_plan" >/dev/null
url="${admin%/*}/bench_plan?sslmode=disable"
users=$((ROWS / 10))
echo "loading $ROWS orders ($((ROWS / 100)) orphans) and $users users..."
psql -q "$url" <<SQL
CREATE TABLE users (id integer PRIMARY KEY);
INSERT INTO users SELECT g FROM generate_series(1, $users) g;
CREATE TABLE orders (id integer PRIMARY KEY, user_id integer, total integer);
-- Every 100th order points at a user that does not exist.
INSERT INTO orders SELECT g, CASE WHEN g % 100 = 0 THEN $users + g ELSE 1 + g % $users END, g % 1000 FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE users;
VACUUM ANALYZE orders;
SQL

mkdir -p "$work/m"
printf -- '-- airlock:allow adding-foreign-key benchmark\nALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n' > "$work/m/1_fk.up.sql"
printf -- '-- airlock:allow require-concurrent-index benchmark\nCREATE INDEX orders_total ON orders (total);\n' > "$work/m/2_index.up.sql"
printf -- '-- airlock:allow changing-column-type benchmark\nALTER TABLE orders ALTER COLUMN total TYPE bigint;\n' > "$work/m/3_rewrite.up.sql"

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
airlock_ms=() ; psql_ms=()
for round in 1 2 3 4 5; do
  "$AIRLOCK" --database-url "$url" --dir "$work/m" plan --format json --check-timeout 120s > "$work/plan.json" || true
  airlock_ms+=("$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); c=[c for c in p["migrations"][0]["statements"][0]["checks"] if c["check"]=="foreign-key-orphans"][0]; print(c["duration_ms"])' "$work/plan.json")")
  psql_ms+=("$(psql -qAt "$url" -c '\timing on' -c 'SELECT count(*) FROM orders o WHERE o.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id)' | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')")
done
a=$(printf '%s\n' "${airlock_ms[@]}" | median); p=$(printf '%s\n' "${psql_ms[@]}" | median)
python3 - "$work/plan.json" "$a" "$p" <<'PY'
import json, sys
plan, a, p = json.load(open(sys.argv[1])), float(sys.argv[2]), float(sys.argv[3])
c = [c for c in plan["migrations"][0]["statements"][0]["checks"] if c["check"] == "foreign-key-orphans"][0]
print(f"foreign-key-orphans: {c['violations']} orphans found; airlock check median {a:.0f} ms, psql anti-join median {p:.0f} ms, ratio {a / p:.2f}")
PY
estimates() { python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); s=[m["statements"][0] for m in p["migrations"] if m["statements"][0].get("work") in ("index","rewrite")]; print(" ".join(str(x["estimated_seconds"]) for x in s[:2]))' "$1"; }
read -r d_index d_rewrite < <(estimates "$work/plan.json")

# (2b) calibrated: `airlock calibrate` on this installation, then plan again.
"$AIRLOCK" --database-url "$url" calibrate --rows 200000 >/dev/null
"$AIRLOCK" --database-url "$url" --dir "$work/m" plan --format json --check-timeout 120s > "$work/plan-cal.json" || true
read -r c_index c_rewrite < <(estimates "$work/plan-cal.json")

real() { psql -qAt "$url" -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'; }
r_index=$(real 'CREATE INDEX orders_total ON orders (total)')
r_rewrite=$(real 'ALTER TABLE orders ALTER COLUMN total TYPE bigint')

# (2c) from history: airlock applies an index build and a rewrite (each run
# leaves a timing event), then plans the same work on another column.
psql -q "$url" -c 'DROP INDEX orders_total' -c 'ALTER TABLE orders ALTER COLUMN total TYPE integer' -c 'VACUUM ANALYZE orders' >/dev/null
mkdir -p "$work/h"
cp "$work/m/2_index.up.sql" "$work/h/1_index.up.sql"
cp "$work/m/3_rewrite.up.sql" "$work/h/2_rewrite.up.sql"
"$AIRLOCK" --database-url "$url" --dir "$work/h" migrate >/dev/null
psql -q "$url" -c 'VACUUM ANALYZE orders' >/dev/null
printf -- '-- airlock:allow require-concurrent-index benchmark\nCREATE INDEX orders_user ON orders (user_id);\n' > "$work/h/3_index.up.sql"
printf -- '-- airlock:allow changing-column-type benchmark\nALTER TABLE orders ALTER COLUMN user_id TYPE bigint;\n' > "$work/h/4_rewrite.up.sql"
"$AIRLOCK" --database-url "$url" --dir "$work/h" plan --format json > "$work/plan-hist.json" || true
read -r h_index h_rewrite < <(estimates "$work/plan-hist.json")
h_r_index=$(real 'CREATE INDEX orders_user ON orders (user_id)')
h_r_rewrite=$(real 'ALTER TABLE orders ALTER COLUMN user_id TYPE bigint')

python3 - "$d_index" "$d_rewrite" "$c_index" "$c_rewrite" "$r_index" "$r_rewrite" "$h_index" "$h_rewrite" "$h_r_index" "$h_r_rewrite" <<'PY'
import sys
d_i, d_r, c_i, c_r, r_i, r_r, h_i, h_r, hr_i, hr_r = (float(x) for x in sys.argv[1:])
r_i, r_r, hr_i, hr_r = r_i / 1000, r_r / 1000, hr_i / 1000, hr_r / 1000
for source, (ei, er, ri, rr) in [("built-in default", (d_i, d_r, r_i, r_r)), ("calibrate", (c_i, c_r, r_i, r_r)), ("history", (h_i, h_r, hr_i, hr_r))]:
    print(f"{source:>16}: CREATE INDEX estimate {ei:.1f} s, real {ri:.1f} s, ratio {ei / ri:.2f}; rewriting ALTER estimate {er:.1f} s, real {rr:.1f} s, ratio {er / rr:.2f}")
PY

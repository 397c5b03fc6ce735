#!/usr/bin/env bash
# The fleet benchmark: N PostgreSQL databases (200 by default) on one
# server, each given the same five migrations (tables, a foreign key, an
# index, a column, a row). `airlock --fleet bench migrate --parallel P` (8 by
# default: the look at every member, one canary, then one stage) is timed
# against N single `airlock migrate` runs, one after another, over another N
# fresh databases: the target is the fleet within 1.3x of their sum divided
# by P. Then one more migration, pending everywhere, for `plan`: the fleet's
# plan against the sum of single plans, likewise. A third set is migrated by
# P single runs at a time (`xargs -P`): what the machine itself allows, the
# baseline a fleet cannot beat on fewer cores than P.
#
# Usage: scripts/test bench/fleet.sh [N] [P]     (the harness provides the server)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
P=${2:-8}
. bench/common.sh
bench_setup fleet

admin=$AIRLOCK_TEST_POSTGRES_URL
url() { echo "${admin%/*}/$1?sslmode=disable"; }
cat > "$work/migrations/1_users.up.sql" <<'SQL'
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);
SQL
cat > "$work/migrations/2_orders.up.sql" <<'SQL'
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id), total numeric(12, 2));
SQL
cat > "$work/migrations/3_orders_user.up.sql" <<'SQL'
CREATE INDEX orders_user ON orders (user_id);
SQL
cat > "$work/migrations/4_users_name.up.sql" <<'SQL'
ALTER TABLE users ADD COLUMN name text;
SQL
cat > "$work/migrations/5_admin.up.sql" <<'SQL'
-- airlock:data
INSERT INTO users (id, email, name) VALUES (1, 'admin@example.com', 'admin');
SQL

databases() { for i in $(seq 1 "$N"); do echo "bench_fleet_$1_$i"; done; }
for set in single fleet xargs; do
  databases $set | sed 's/.*/DROP DATABASE IF EXISTS &; CREATE DATABASE &;/' | psql -q "$admin" >/dev/null
done
trap 'for set in single fleet xargs; do databases $set | sed "s/.*/DROP DATABASE IF EXISTS &;/" | psql -q "$admin" >/dev/null; done; rm -rf "$work"' EXIT
{
  echo "[fleets.bench]"
  echo "parallel = $P"
  echo "urls = ["
  databases fleet | while read -r db; do echo "  \"$(url "$db")\","; done
  echo "]"
} > "$work/airlock.toml"

now() { date +%s.%N; }
singles() { # COMMAND: each single database in turn; prints the seconds all took
  local start; start=$(now)
  databases single | while read -r db; do
    "$AIRLOCK" --database-url "$(url "$db")" --dir "$work/migrations" "$1" >/dev/null
  done
  echo "$(now) - $start" | bc
}
whole() { # COMMAND: the fleet; prints the seconds it took
  local start; start=$(now)
  (cd "$work" && "$AIRLOCK" --fleet bench --dir "$work/migrations" "$1" >/dev/null 2>&1)
  echo "$(now) - $start" | bc
}
ratio() { echo "scale=2; $2 / ($1 / $P)" | bc; }
at_once() { # COMMAND: P single runs at a time over the third set; prints the seconds
  local start; start=$(now)
  databases xargs | xargs -P "$P" -I{} "$AIRLOCK" --database-url "${admin%/*}/{}?sslmode=disable" --dir "$work/migrations" "$1" >/dev/null
  echo "$(now) - $start" | bc
}

single_migrate=$(singles migrate)
fleet_migrate=$(whole migrate)
xargs_migrate=$(at_once migrate)
cat > "$work/migrations/6_users_email.up.sql" <<'SQL'
CREATE UNIQUE INDEX users_email ON users (email);
SQL
single_plan=$(singles plan)
fleet_plan=$(whole plan)
xargs_plan=$(at_once plan)
applied=$(psql -Atq "$(url bench_fleet_fleet_$N)" -c "SELECT count(*) FROM airlock_history WHERE state = 'succeeded'")
[ "$applied" = 5 ] || { echo "the fleet's last member has $applied migrations applied, not 5" >&2; exit 1; }
cat <<EOT
Fleet benchmark: $N PostgreSQL databases on one server ($(psql -Atq "$admin" -c 'SHOW server_version' | cut -d' ' -f1)), parallel $P
machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo)
migrate (5 migrations each): $N single runs in turn ${single_migrate} s (÷ $P = $(echo "scale=2; $single_migrate / $P" | bc) s); $P at a time (xargs -P $P) ${xargs_migrate} s; --fleet ${fleet_migrate} s: $(ratio "$single_migrate" "$fleet_migrate")x (target ≤ 1.3x)
plan (1 pending each): $N single runs in turn ${single_plan} s (÷ $P = $(echo "scale=2; $single_plan / $P" | bc) s); $P at a time (xargs -P $P) ${xargs_plan} s; --fleet ${fleet_plan} s: $(ratio "$single_plan" "$fleet_plan")x (target ≤ 1.3x)
EOT

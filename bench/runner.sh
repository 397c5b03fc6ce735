#!/usr/bin/env bash
# The runner benchmark: airlock beside dbmate, sqlx-cli and refinery_cli on local PostgreSQL.
#   (a) apply N trivial migrations to an empty database
#   (b) `migrate` with nothing pending over N applied migrations — what every deploy pays
# plus peak memory (max RSS) of airlock for both, and airlock's own figures on
# MariaDB and SQLite for reference. Peers are measured in the same run as
# airlock: these machines drift ±30 %, so compare ratios.
#
# Usage: scripts/test bench/runner.sh [N]     (the harness provides the servers)
# Needs: hyperfine and GNU time (installed here when missing), dbmate
# (`npm install -g dbmate`, or the copy scripts/test installs), sqlx-cli and
# refinery_cli (on PATH, or in target/peer-tools where scripts/adopt-peers
# installs them: `cargo install sqlx-cli --no-default-features --features
# postgres,sqlite,rustls`, `cargo install refinery_cli --no-default-features
# --features postgresql,sqlite-bundled`); a missing peer is skipped with a
# note, never silently.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
: "${AIRLOCK_TEST_POSTGRES_URL:?run through scripts/test}"
: "${AIRLOCK_TEST_MYSQL_URL:?run through scripts/test}"

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need hyperfine hyperfine
[ -x /usr/bin/time ] || need time time

cargo build -q --release -p airlock-cli
AIRLOCK=$PWD/target/release/airlock
DBMATE=${AIRLOCK_TEST_DBMATE:-$(ls "$(npm root -g 2>/dev/null)"/dbmate/node_modules/@dbmate/linux-x64/bin/dbmate 2>/dev/null || true)}
peer() { command -v "$1" 2>/dev/null || { [ -x "target/peer-tools/bin/$1" ] && echo "$PWD/target/peer-tools/bin/$1"; } || true; }
SQLX=$(peer sqlx)
REFINERY=$(peer refinery)

work=$(mktemp -d /tmp/airlock-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The same N migrations in each tool's layout: CREATE TABLE t_<i> (id bigint primary key, v text);
mkdir -p "$work/airlock" "$work/dbmate" "$work/sqlx" "$work/refinery"
for i in $(seq 1 "$N"); do
  v=$(printf '%05d' "$i")
  sql="CREATE TABLE t_$i (id bigint primary key, v text);"
  echo "$sql" > "$work/airlock/${v}_t_$i.up.sql"
  printf -- '-- migrate:up\n%s\n\n-- migrate:down\n' "$sql" > "$work/dbmate/${v}_t_$i.sql"
  echo "$sql" > "$work/sqlx/${v}_t_$i.sql"
  echo "$sql" > "$work/refinery/V${i}__t_$i.sql"
done

pg_admin=$AIRLOCK_TEST_POSTGRES_URL
# Plain loopback for every tool, as PEERS.md measured (the test server also offers TLS).
pg_url() { echo "${pg_admin%/*}/$1?sslmode=disable"; }
fresh_pg() { psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null; }
my_admin=$AIRLOCK_TEST_MYSQL_URL
my_port=${my_admin##*:}; my_port=${my_port%%/*}
fresh_my() { mariadb --no-defaults -h127.0.0.1 -P"$my_port" -uroot -e "DROP DATABASE IF EXISTS $1; CREATE DATABASE $1"; }

# Tool commands: apply all / nothing to do, given a database URL.
airlock_cmd() { echo "$AIRLOCK --database-url $1 --dir $work/airlock migrate"; }
dbmate_cmd() { echo "$DBMATE --no-dump-schema --url $1 --migrations-dir $work/dbmate up"; }
sqlx_cmd() { echo "$SQLX migrate run --source $work/sqlx --database-url $1"; }
# refinery_cli reads the URL from an environment variable it is given the name
# of: set once (its database is always bench_refinery), so no `env` process
# adds to its time.
refinery_cmd() { echo "$REFINERY migrate -e REFINERY_URL -p $work/refinery"; }

export REFINERY_URL
REFINERY_URL=$(pg_url bench_refinery)
tools=(airlock)
[ -n "$DBMATE" ] && tools+=(dbmate) || echo "note: dbmate not installed; skipped" >&2
[ -n "$SQLX" ] && tools+=(sqlx) || echo "note: sqlx-cli not installed; skipped" >&2
[ -n "$REFINERY" ] && tools+=(refinery) || echo "note: refinery_cli not installed; skipped" >&2

median_ms() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(round(r["median"]*1000, 1))' "$1"; }
# Median over every run of every round file given.
median_of() { python3 -c '
import json, statistics, sys
times = [t for f in sys.argv[1:] for t in json.load(open(f))["results"][0]["times"]]
print(round(statistics.median(times) * 1000, 1))' "$@"; }
max_rss_mb() { /usr/bin/time -f %M "$@" >/dev/null 2>"$work/rss" || true; awk 'END { printf "%.1f", $1/1024 }' "$work/rss"; }

# Rounds interleave the tools, so that the machine's drift (±30 % here) falls
# on all of them alike: apply = ROUNDS runs each on a fresh database; nothing to
# do = ROUNDS x 10 runs each after warm-up.
ROUNDS=${ROUNDS:-5}
for round in $(seq 1 "$ROUNDS"); do
  for tool in "${tools[@]}"; do
    db="bench_${tool}"
    cmd=$(${tool}_cmd "$(pg_url "$db")")
    echo "== round $round, $tool: (a) apply $N migrations, then (b) nothing to do" >&2
    hyperfine -N --runs 1 --prepare "psql -q $pg_admin -c 'DROP DATABASE IF EXISTS $db WITH (FORCE)' -c 'CREATE DATABASE $db'" \
      --export-json "$work/$tool-apply-$round.json" "$cmd" >&2
    hyperfine -N --warmup 2 --runs 10 --export-json "$work/$tool-noop-$round.json" "$cmd" >&2
  done
done
declare -A apply_ms noop_ms
for tool in "${tools[@]}"; do
  apply_ms[$tool]=$(median_of "$work/$tool"-apply-*.json)
  noop_ms[$tool]=$(median_of "$work/$tool"-noop-*.json)
done

# airlock's peak memory, both cases.
fresh_pg bench_rss
rss_apply=$(max_rss_mb $(airlock_cmd "$(pg_url bench_rss)"))
rss_noop=$(max_rss_mb $(airlock_cmd "$(pg_url bench_rss)"))

# airlock alone on MariaDB and SQLite, for reference.
my_url="${my_admin%/*}/bench_airlock"
echo "== airlock on MariaDB" >&2
hyperfine -N --runs 3 --prepare "mariadb --no-defaults -h127.0.0.1 -P$my_port -uroot -e 'DROP DATABASE IF EXISTS bench_airlock; CREATE DATABASE bench_airlock'" \
  --export-json "$work/my-apply.json" "$(airlock_cmd "$my_url")" >&2
hyperfine -N --warmup 3 --runs 30 --export-json "$work/my-noop.json" "$(airlock_cmd "$my_url")" >&2
echo "== airlock on SQLite" >&2
hyperfine -N --runs 5 --prepare "rm -f $work/bench.db" --export-json "$work/lite-apply.json" "$(airlock_cmd "sqlite:$work/bench.db")" >&2
hyperfine -N --warmup 3 --runs 30 --export-json "$work/lite-noop.json" "$(airlock_cmd "sqlite:$work/bench.db")" >&2

# A figure the machine's noise does not move: instructions of one nothing-to-do
# run on SQLite (valgrind counts instructions, not time).
instructions="(valgrind not installed)"
if command -v valgrind >/dev/null; then
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" $(airlock_cmd "sqlite:$work/bench.db") >/dev/null 2>"$work/cg.err" || true
  instructions=$(awk '/refs:/ { gsub(",", "", $NF); printf "%.1f M", $NF/1e6 }' "$work/cg.err")
fi

cat <<EOT
Runner benchmark: N = $N migrations, each CREATE TABLE t_<i> (id bigint primary key, v text)
machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo), $(psql -Atq "$pg_admin" -c 'SHOW server_version' | cut -d' ' -f1) PostgreSQL, $(mariadb --no-defaults -h127.0.0.1 -P"$my_port" -uroot -N -e 'SELECT VERSION()')
medians over $ROUNDS interleaved rounds (apply: 1 run per round on a fresh database; nothing to do: 10 runs per round after 2 warm-ups)

| PostgreSQL | (a) apply all (ms) | (b) nothing to do (ms) |
|---|---:|---:|
EOT
for tool in "${tools[@]}"; do
  echo "| $tool | ${apply_ms[$tool]} | ${noop_ms[$tool]} |"
done
# airlock against the fastest peer of each column.
python3 - "${tools[@]}" <<PY
import sys
apply = dict(zip(sys.argv[1:], [float(x) for x in "$(for t in "${tools[@]}"; do printf '%s ' "${apply_ms[$t]}"; done)".split()]))
noop = dict(zip(sys.argv[1:], [float(x) for x in "$(for t in "${tools[@]}"; do printf '%s ' "${noop_ms[$t]}"; done)".split()]))
for name, col in (("apply all", apply), ("nothing to do", noop)):
    peers = {k: v for k, v in col.items() if k != "airlock"}
    if peers:
        best = min(peers, key=peers.get)
        print(f"{name}: airlock / fastest peer ({best}) = {col['airlock'] / peers[best]:.2f}x")
PY
cat <<EOT

airlock peak memory (max RSS): apply all ${rss_apply} MB, nothing to do ${rss_noop} MB

| airlock elsewhere | (a) apply all (ms) | (b) nothing to do (ms) |
|---|---:|---:|
| MariaDB | $(median_ms "$work/my-apply.json") | $(median_ms "$work/my-noop.json") |
| SQLite (temp file) | $(median_ms "$work/lite-apply.json") | $(median_ms "$work/lite-noop.json") |

instructions of one nothing-to-do run over N applied on SQLite (callgrind): $instructions
EOT

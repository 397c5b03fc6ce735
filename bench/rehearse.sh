#!/usr/bin/env bash
# The rehearsal benchmark: N migrations (tables, columns, indexes, checks,
# each with its down script) applied once with `airlock migrate` on an empty
# PostgreSQL database, against `airlock rehearse --all` of the same
# migrations: up, down and up again of each, with a schema snapshot before
# and after every step. Target: the rehearsal within 3.5x the apply.
#
# With BASE=M, the same N migrations are also applied and rehearsed on top
# of a schema of M tables already applied: a rehearsal then reads again,
# after each step, only what the step names, so its cost should not grow
# with the schema (the applied schema is still replayed into the scratch
# database once).
#
# Usage: scripts/test bench/rehearse.sh [N]     (the harness provides the server)
#        BASE=1000 scripts/test bench/rehearse.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
RUNS=${RUNS:-5}
. bench/common.sh
bench_setup rehearse

admin=$AIRLOCK_TEST_POSTGRES_URL
url="${admin%/*}/bench_rehearse?sslmode=disable"
python3 - "$N" "$work/migrations" <<'PY'
import sys, pathlib
n, out = int(sys.argv[1]), pathlib.Path(sys.argv[2])
def write(i, name, up, down):
    (out / f"{i + 1:04d}_{name}.up.sql").write_text(up + "\n")
    (out / f"{i + 1:04d}_{name}.down.sql").write_text(down + "\n")
for i in range(n):
    t = f"t{i - i % 4}"
    step = i % 4
    if step == 0:
        write(i, t, f"CREATE TABLE {t} (id bigint PRIMARY KEY, a text NOT NULL DEFAULT 'x', b int);\n"
                    f"CREATE INDEX {t}_a ON {t} (a);", f"DROP TABLE {t};")
    elif step == 1:
        write(i, f"{t}_c", f"ALTER TABLE {t} ADD COLUMN c int;", f"ALTER TABLE {t} DROP COLUMN c;")
    elif step == 2:
        write(i, f"{t}_note", f"COMMENT ON TABLE {t} IS 'rehearsed';\nALTER TABLE {t} ALTER COLUMN b SET DEFAULT 1;",
              f"COMMENT ON TABLE {t} IS NULL;\nALTER TABLE {t} ALTER COLUMN b DROP DEFAULT;")
    else:
        write(i, f"{t}_view", f"CREATE VIEW {t}_v AS SELECT id, a FROM {t};", f"DROP VIEW {t}_v;")
PY
reset="psql -q $admin -c 'DROP DATABASE IF EXISTS bench_rehearse' -c 'CREATE DATABASE bench_rehearse'"
eval "$reset" >/dev/null
"$AIRLOCK" --database-url "$url" --dir "$work/migrations" migrate >/dev/null
"$AIRLOCK" --database-url "$url" --dir "$work/migrations" --format json rehearse --all > "$work/rehearsal.json"
python3 - "$work/rehearsal.json" "$N" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["verdict"] == "clean" and len(r["migrations"]) == int(sys.argv[2]), r["verdict"]
PY
hyperfine -N --runs "$RUNS" --prepare "$reset" --export-json "$work/apply.json" \
  "$AIRLOCK --database-url $url --dir $work/migrations migrate" >&2
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$work/rehearse.json" \
  "$AIRLOCK --database-url $url --dir $work/migrations rehearse --all" >&2
read -r apply rehearse <<<"$(python3 -c 'import json,sys; print(*(round(json.load(open(f))["results"][0]["median"]*1000) for f in sys.argv[1:]))' "$work/apply.json" "$work/rehearse.json")"
cat <<EOT
Rehearsal benchmark: $N migrations with down scripts, PostgreSQL $(psql -Atq "$admin" -c 'SHOW server_version' | cut -d' ' -f1)
machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo)
airlock migrate (apply once, empty database): median $apply ms
airlock rehearse --all (up, down, up again, the schema read around each step): median $rehearse ms ($(python3 -c "print(round($rehearse / $apply, 2))")x)
EOT
psql -q "$admin" -c "DROP DATABASE IF EXISTS bench_rehearse" >/dev/null

BASE=${BASE:-0}
if [ "$BASE" -gt 0 ]; then
  mkdir -p "$work/big"
  cp "$work/migrations"/* "$work/big/"
  python3 - "$BASE" > "$work/big/0000_base.up.sql" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"CREATE TABLE base{i} (id bigint PRIMARY KEY, a text NOT NULL DEFAULT 'x', b int CHECK (b > 0));")
    print(f"CREATE INDEX base{i}_a ON base{i} (a) WHERE b > 1;")
PY
  big="${admin%/*}/bench_rehearse_big?sslmode=disable"
  # hyperfine -N runs it without a shell: the shell is asked for.
  reset_big="bash -c \"psql -q $admin -c 'DROP DATABASE IF EXISTS bench_rehearse_big' -c 'CREATE DATABASE bench_rehearse_big' && $AIRLOCK --database-url '$big' --dir $work/big migrate --to 0 >/dev/null\""
  hyperfine -N --runs "$RUNS" --prepare "$reset_big" --export-json "$work/apply_big.json" \
    "$AIRLOCK --database-url $big --dir $work/big migrate" >&2
  eval "$reset_big"
  hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$work/rehearse_big.json" \
    "$AIRLOCK --database-url $big --dir $work/big rehearse" >&2
  read -r apply_big rehearse_big <<<"$(python3 -c 'import json,sys; print(*(round(json.load(open(f))["results"][0]["median"]*1000) for f in sys.argv[1:]))' "$work/apply_big.json" "$work/rehearse_big.json")"
  cat <<EOT
on a schema of $BASE tables already applied:
airlock migrate (the $N pending): median $apply_big ms
airlock rehearse (the applied schema replayed into the scratch database, then the $N pending rehearsed): median $rehearse_big ms
EOT
  psql -q "$admin" -c "DROP DATABASE IF EXISTS bench_rehearse_big" >/dev/null
fi

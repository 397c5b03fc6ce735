#!/usr/bin/env bash
# The rehearsal benchmark: N migrations (tables, columns, indexes, checks,
# each with its down script) applied once with `airlock migrate` on an empty
# PostgreSQL database, against `airlock rehearse --all` of the same
# migrations: up, down and up again of each, with a schema snapshot before
# and after every step. Target: the rehearsal within 3.5x the apply.
#
# The two are timed in rounds (a fresh database, the rehearsal, the apply),
# so that a machine whose pace changes from one minute to the next (these
# do: the disk's above all) slows both alike; the ratio is taken round by
# round and the medians reported.
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
RUNS=${RUNS:-9}
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

# rounds RESET REHEARSE APPLY: RUNS rounds of RESET, REHEARSE timed, APPLY
# timed (after one rehearsal to warm up). Prints the apply's median ms, the
# rehearsal's, and the median, lowest and highest ratio of the rounds.
rounds() {
  python3 - "$RUNS" "$@" <<'PY'
import statistics, subprocess, sys, time
runs, reset, rehearse, apply = int(sys.argv[1]), *sys.argv[2:]
def run(cmd):
    started = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - started) * 1000
run(reset)
run(rehearse)
applied, rehearsed = [], []
for _ in range(runs):
    run(reset)
    rehearsed.append(run(rehearse))
    applied.append(run(apply))
ratios = [r / a for a, r in zip(applied, rehearsed)]
print(round(statistics.median(applied)), round(statistics.median(rehearsed)),
      round(statistics.median(ratios), 2), round(min(ratios), 2), round(max(ratios), 2))
PY
}

reset="psql -q $admin -c 'DROP DATABASE IF EXISTS bench_rehearse' -c 'CREATE DATABASE bench_rehearse'"
eval "$reset" >/dev/null
"$AIRLOCK" --database-url "$url" --dir "$work/migrations" --format json rehearse --all > "$work/rehearsal.json"
python3 - "$work/rehearsal.json" "$N" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["verdict"] == "clean" and len(r["migrations"]) == int(sys.argv[2]), r["verdict"]
PY
read -r apply rehearse ratio low high <<<"$(rounds "$reset" \
  "$AIRLOCK --database-url '$url' --dir $work/migrations rehearse --all" \
  "$AIRLOCK --database-url '$url' --dir $work/migrations migrate")"
cat <<EOT
Rehearsal benchmark: $N migrations with down scripts, PostgreSQL $(psql -Atq "$admin" -c 'SHOW server_version' | cut -d' ' -f1), $RUNS rounds
machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo)
airlock migrate (apply once, empty database): median $apply ms
airlock rehearse --all (up, down, up again, the schema read around each step): median $rehearse ms
rehearse / migrate, round by round: median ${ratio}x (lowest ${low}x, highest ${high}x)
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
  # The base applied, the N pending: rehearsed (the target only read), then applied.
  reset_big="psql -q $admin -c 'DROP DATABASE IF EXISTS bench_rehearse_big' -c 'CREATE DATABASE bench_rehearse_big' && $AIRLOCK --database-url '$big' --dir $work/big migrate --to 0"
  read -r apply_big rehearse_big ratio_big _ _ <<<"$(rounds "$reset_big" \
    "$AIRLOCK --database-url '$big' --dir $work/big rehearse" \
    "$AIRLOCK --database-url '$big' --dir $work/big migrate")"
  cat <<EOT
on a schema of $BASE tables already applied:
airlock migrate (the $N pending): median $apply_big ms
airlock rehearse (the applied schema replayed into the scratch database, then the $N pending rehearsed): median $rehearse_big ms (${ratio_big}x round by round)
EOT
  psql -q "$admin" -c "DROP DATABASE IF EXISTS bench_rehearse_big" >/dev/null
fi

#!/usr/bin/env bash
# The lint benchmark: `airlock lint` beside squawk on the same
# generated corpus of 10,000 mixed PostgreSQL DDL statements in 100 files,
# in the same run: wall time (hyperfine, interleaved) and peak memory (max RSS).
# airlock runs offline (--offline --dialect postgres), as squawk does.
#
# Usage: bench/lint.sh [FILES] [STATEMENTS_PER_FILE]    (defaults: 100 × 100)
# Needs: hyperfine and GNU time (installed here when missing), squawk
# (`pip install squawk-cli`); without squawk, airlock alone is measured, with a note.
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:-100}
PER=${2:-100}

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need hyperfine hyperfine
[ -x /usr/bin/time ] || need time time

cargo build -q --release -p airlock-cli
AIRLOCK=$PWD/target/release/airlock
# The real binary, not a pyenv shim (a shell script that would add its own start-up time).
SQUAWK=$( (pyenv which squawk 2>/dev/null || command -v squawk) | head -1 || true)
work=$(mktemp -d /tmp/airlock-bench-lint.XXXXXX)
trap 'rm -rf "$work"' EXIT

python3 - "$work/migrations" "$FILES" "$PER" <<'PY'
import os, random, sys
out, files, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out)
random.seed(42)
forms = [
    "CREATE TABLE t_{i} (id bigint PRIMARY KEY, user_id bigint, note varchar(40), total numeric(10,2), created_at timestamptz DEFAULT now());",
    "CREATE INDEX idx_{i} ON t_{j} (user_id);",
    "CREATE INDEX CONCURRENTLY idx_c_{i} ON t_{j} (note);",
    "ALTER TABLE t_{j} ADD COLUMN c_{i} text;",
    "ALTER TABLE t_{j} ADD COLUMN r_{i} int NOT NULL;",
    "ALTER TABLE t_{j} ADD COLUMN u_{i} uuid DEFAULT gen_random_uuid();",
    "ALTER TABLE t_{j} ALTER COLUMN note TYPE text;",
    "ALTER TABLE t_{j} ALTER COLUMN note SET NOT NULL;",
    "ALTER TABLE t_{j} ADD CONSTRAINT fk_{i} FOREIGN KEY (user_id) REFERENCES t_{k} (id);",
    "ALTER TABLE t_{j} ADD CONSTRAINT fk_nv_{i} FOREIGN KEY (user_id) REFERENCES t_{k} (id) NOT VALID;",
    "ALTER TABLE t_{j} ADD CONSTRAINT ck_{i} CHECK (total >= 0);",
    "ALTER TABLE t_{j} DROP COLUMN c_{k};",
    "ALTER TABLE t_{j} RENAME COLUMN note TO note_{i};",
    "DROP INDEX idx_{k};",
    "COMMENT ON TABLE t_{j} IS 'table {i}';",
]
n = 0
for f in range(files):
    lines = []
    for s in range(per):
        i = n; n += 1
        lines.append(random.choice(forms).format(i=i, j=random.randrange(max(i, 1)), k=random.randrange(max(i, 1))))
    with open(os.path.join(out, f"{f + 1:05d}_m{f + 1}.up.sql"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
print(f"corpus: {files} files × {per} statements = {n} statements", file=sys.stderr)
PY

# Both tools find problems in this corpus and exit non-zero; only time is
# compared. Both write JSON (squawk's default reporter renders source
# snippets, which costs it twice the time).
airlock_cmd="$AIRLOCK lint --offline --dialect postgres --dir $work/migrations --format json"
# Expanded here: hyperfine -N runs the command without a shell.
squawk_cmd="$SQUAWK --reporter json $(echo "$work"/migrations/*.sql)"
cmds=("$airlock_cmd")
names=(airlock)
if [ -n "$SQUAWK" ]; then
  cmds+=("$squawk_cmd"); names+=(squawk)
  echo "squawk: $($SQUAWK --version 2>&1 | head -1)"
else
  echo "note: squawk not installed (pip install squawk-cli); measuring airlock alone" >&2
fi
hyperfine -N -i --warmup 2 --runs 15 --export-json "$work/h.json" "${cmds[@]}" >/dev/null
rss() { /usr/bin/time -f %M bash -c "$1 >/dev/null 2>&1" 2>&1 | tail -1; }
python3 - "$work/h.json" <<'PY' "${names[@]}"
import json, sys
r = json.load(open(sys.argv[1]))["results"]
names = sys.argv[2:]
for name, res in zip(names, r):
    print(f"{name}: median {res['median']*1000:.1f} ms (min {res['min']*1000:.1f}, max {res['max']*1000:.1f})")
PY
echo "airlock max RSS: $(( $(rss "$airlock_cmd") / 1024 )) MB"
[ -n "$SQUAWK" ] && echo "squawk max RSS: $(( $(rss "$squawk_cmd") / 1024 )) MB"
[ -n "$SQUAWK" ] && echo "squawk findings: $($SQUAWK --reporter gcc $(echo "$work"/migrations/*.sql) 2>/dev/null | grep -c ': ' || true)"
("$AIRLOCK" lint --offline --dialect postgres --dir "$work/migrations" --format json 2>/dev/null || true) | python3 -c 'import json,sys; d=json.load(sys.stdin); print("airlock findings:", len(d["findings"]), d["summary"])'

#!/usr/bin/env bash
# The backfill benchmark: one table of ROWS rows (2 million by default) on
# PostgreSQL, every row changed by one statement run two ways: as one
# unbatched `UPDATE` (psql), and as airlock's backfill of the same
# statement (`-- airlock:backfill`, default settings: batches toward
# 200 ms each). Target: the backfill's throughput at least 70% of the
# unbatched UPDATE's.
#
# Then both again while writers work on the same table (pgbench, 2
# clients, each transaction updating one random row and inserting one):
# the writers' p50/p99 latency over the transactions that started while
# the change ran. The unbatched UPDATE holds every row it changed until it
# commits, so a writer touching one waits for all of it; the backfill's
# batches each hold theirs for one batch.
#
# The table is vacuumed before each run, so each starts from the same
# state. Rounds interleave the two ways; medians are reported.
#
# Usage: scripts/test bench/backfill.sh [ROWS]     (the harness provides the server)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-2000000}
RUNS=${RUNS:-3}
. bench/common.sh
bench_setup backfill

admin=$AIRLOCK_TEST_POSTGRES_URL
base="${admin%/*}"
url="$base/bench_backfill?sslmode=disable"
psql -q "$admin" -c 'DROP DATABASE IF EXISTS bench_backfill' -c 'CREATE DATABASE bench_backfill'
echo "making $ROWS rows..."
psql -q "$url" <<SQL
CREATE TABLE t (id bigint PRIMARY KEY, n integer NOT NULL DEFAULT 0, w integer NOT NULL DEFAULT 0, note text);
INSERT INTO t (id, note) SELECT i, md5(i::text) FROM generate_series(1, $ROWS) AS i;
VACUUM ANALYZE t;
SQL
cat > "$work/writer.sql" <<SQL
\set id random(1, $ROWS)
\set fresh random(100000000, 2000000000)
BEGIN;
UPDATE t SET w = w + 1 WHERE id = :id;
INSERT INTO t (id, note) VALUES (:fresh, 'new') ON CONFLICT DO NOTHING;
COMMIT;
SQL

python3 - "$RUNS" "$AIRLOCK" "$work" "$url" "$ROWS" <<'PY'
import glob, os, statistics, subprocess, sys, time
runs, airlock, work, url, rows = sys.argv[1:]
runs, rows = int(runs), int(rows)
env = dict(os.environ, PGSSLMODE="disable")
STATEMENT = "UPDATE t SET n = n + 1, note = upper(note) WHERE id <= {rows}".format(rows=rows)
version = 0

def psql(sql):
    subprocess.run(["psql", "-q", url, "-c", sql], env=env, check=True, stdout=subprocess.DEVNULL)

def unbatched():
    psql(STATEMENT)

def backfill():
    global version
    version += 1
    with open(f"{work}/migrations/{version}_touch.up.sql", "w") as f:
        f.write(f"-- airlock:backfill\n{STATEMENT};\n")
    subprocess.run([airlock, "--database-url", url, "--dir", f"{work}/migrations", "migrate"],
                   env=env, check=True, stdout=subprocess.DEVNULL)

def timed(change):
    psql("VACUUM t")
    started = time.perf_counter()
    change()
    return time.perf_counter() - started

def with_writers(change, expected):
    """Runs `change` while pgbench writes; returns its seconds and the
    latencies (ms) of the writer transactions that started during it."""
    psql("VACUUM t")
    for old in glob.glob(f"{work}/pgb*"):
        os.remove(old)
    span = int(expected * 1.5) + 5
    bench = subprocess.Popen(["pgbench", "-n", "-c", "2", "-T", str(span), "-f", f"{work}/writer.sql",
                              "--log", f"--log-prefix={work}/pgb", url],
                             env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    begin = time.time()
    change()
    end = time.time()
    bench.wait()
    latencies = []
    for log in glob.glob(f"{work}/pgb*"):
        for line in open(log):
            parts = line.split()
            # client transaction latency_us script epoch_s epoch_us
            latency = int(parts[2]) / 1e6
            finished = int(parts[4]) + int(parts[5]) / 1e6
            if begin <= finished - latency <= end:
                latencies.append(latency * 1000)
    latencies.sort()
    return end - begin, latencies

plain, batched, plain_w, batched_w, plain_lat, batched_lat = [], [], [], [], [], []
for _ in range(runs):
    plain.append(timed(unbatched))
    batched.append(timed(backfill))
for _ in range(runs):
    s, lat = with_writers(unbatched, statistics.median(plain))
    plain_w.append(s); plain_lat += lat
    s, lat = with_writers(backfill, statistics.median(batched))
    batched_w.append(s); batched_lat += lat
plain_lat.sort(); batched_lat.sort()

def pct(values, p):
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")

p, b = statistics.median(plain), statistics.median(batched)
print(f"rows: {rows:,}; `{STATEMENT}`; {runs} rounds, medians")
print(f"unbatched UPDATE          {p:7.2f} s   {rows / p:9,.0f} rows/s")
print(f"airlock backfill          {b:7.2f} s   {rows / b:9,.0f} rows/s   throughput {p / b:.0%} of the unbatched UPDATE")
print(f"with writers (pgbench, 2 clients, 1 UPDATE + 1 INSERT per transaction):")
print(f"  unbatched UPDATE        {statistics.median(plain_w):7.2f} s   writers: {len(plain_lat):6} transactions, "
      f"p50 {pct(plain_lat, 50):8.1f} ms, p99 {pct(plain_lat, 99):8.1f} ms, max {pct(plain_lat, 100):8.1f} ms")
print(f"  airlock backfill        {statistics.median(batched_w):7.2f} s   writers: {len(batched_lat):6} transactions, "
      f"p50 {pct(batched_lat, 50):8.1f} ms, p99 {pct(batched_lat, 99):8.1f} ms, max {pct(batched_lat, 100):8.1f} ms")
PY
psql -q "$admin" -c 'DROP DATABASE IF EXISTS bench_backfill'

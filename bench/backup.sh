#!/usr/bin/env bash
# The backup benchmark: one table of ROWS rows (5 million by default) on
# PostgreSQL, saved by `airlock migrate` before a one-statement migration
# on it (`backup = "tables"`), against `pg_dump` of that table alone in the
# same format and compression (custom format, zstd level 3: `pg_dump -Fc
# -Z0 | zstd -3`, as airlock compresses it, PostgreSQL 15's pg_dump having
# no zstd of its own); and `airlock backup verify` of the stored backup
# against `zstd -dc | pg_restore` of that archive into an empty database.
# Targets: the backup within 1.1x the dump, the verification within 1.3x
# the restore, and airlock's peak memory under 100 MB whatever the size.
#
# airlock's backup first saves (pg_dump at its own pace into zstd and the
# store, each saved table's digest read in the dump's snapshot beside it:
# the manifest's `dump_ms`, which compares with the dump alone), then
# verifies (the stored file restored into a scratch database and every
# row's digest compared): the whole (`duration_ms`) compares with a dump
# plus a restore. Peak memory is `/usr/bin/time -v`'s maximum resident set
# size of the whole airlock process. Rounds interleave the tools, medians
# are reported.
#
# Usage: scripts/test bench/backup.sh [ROWS]     (the harness provides the server)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-5000000}
RUNS=${RUNS:-3}
. bench/common.sh
bench_setup backup
command -v zstd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zstd >/dev/null; }

admin=$AIRLOCK_TEST_POSTGRES_URL
base="${admin%/*}"
url="$base/bench_backup?sslmode=disable"
psql -q "$admin" -c 'DROP DATABASE IF EXISTS bench_backup' -c 'DROP DATABASE IF EXISTS bench_backup_restored' \
  -c 'CREATE DATABASE bench_backup'
echo "making $ROWS rows..."
psql -q "$url" <<SQL
CREATE TABLE t (id bigint PRIMARY KEY, account int NOT NULL, note text, amount numeric(12,2), at timestamptz NOT NULL);
INSERT INTO t SELECT i, i % 1000, md5(i::text), (i % 100000) / 100.0, '2026-01-01'::timestamptz + i * interval '1 second'
FROM generate_series(1, $ROWS) AS i;
VACUUM ANALYZE t;
SQL
size=$(psql -qAt "$url" -c "SELECT pg_size_pretty(pg_total_relation_size('t'))")
cat > "$work/airlock.toml" <<TOML
[environments.bench]
url = "$url"
protected = true
backup_dir = "$work/saved"
backup_budget = "0"
TOML

python3 - "$RUNS" "$AIRLOCK" "$work" "$url" "$base" "$admin" "$ROWS" "$size" <<'PY'
import json, os, re, statistics, subprocess, sys, time
runs, airlock, work, url, base, admin, rows, size = sys.argv[1:]
runs = int(runs)
env = dict(os.environ, PGSSLMODE="disable")

def timed(cmd):
    """Wall milliseconds and peak RSS (MB) of a shell command."""
    started = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v", "sh", "-c", cmd], env=env, check=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ms = (time.perf_counter() - started) * 1000
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024
    return ms, peak

def psql(sql):
    subprocess.run(["psql", "-q", admin, "-c", sql], env=env, check=True, stdout=subprocess.DEVNULL)

archive = f"{work}/t.dump.zst"
dump = f"pg_dump -Fc -Z0 -t t '{url}' | zstd -q -3 > {archive}"
restore = f"zstd -dc {archive} | pg_restore --no-owner --exit-on-error -d '{base}/bench_backup_restored?sslmode=disable'"
results = {k: [] for k in ("dump", "restore", "backup", "dumped", "migrate", "verify", "migrate_mb", "verify_mb")}
for i in range(runs):
    ms, _ = timed(dump)
    results["dump"].append(ms)
    psql("DROP DATABASE IF EXISTS bench_backup_restored")
    psql("CREATE DATABASE bench_backup_restored")
    ms, _ = timed(restore)
    results["restore"].append(ms)
    psql("DROP DATABASE bench_backup_restored")
    version = i + 1
    with open(f"{work}/migrations/{version}_touch.up.sql", "w") as f:
        f.write(f"-- airlock:data\nUPDATE t SET account = account WHERE id = -{version};\n")
    ms, mb = timed(f"{airlock} --env bench --dir {work}/migrations --config {work}/airlock.toml migrate")
    results["migrate"].append(ms)
    results["migrate_mb"].append(mb)
    listed = json.loads(subprocess.run(
        [airlock, "--env", "bench", "--dir", f"{work}/migrations", "--config", f"{work}/airlock.toml",
         "--format", "json", "backup", "list"], env=env, check=True, capture_output=True, text=True).stdout)
    newest = listed["backups"][0]
    results["backup"].append(newest["duration_ms"])
    results["dumped"].append(newest["dump_ms"])
    ms, mb = timed(f"{airlock} --env bench --dir {work}/migrations --config {work}/airlock.toml backup verify {newest['id']}")
    results["verify"].append(ms)
    results["verify_mb"].append(mb)
    stored = newest["stored_bytes"]

med = {k: statistics.median(v) for k, v in results.items()}
print(f"rows: {int(rows):,} ({size} with its index); stored backup {stored / 1048576:.0f} MB; "
      f"archive {os.path.getsize(archive) / 1048576:.0f} MB; {runs} rounds, medians")
print(f"pg_dump -Fc -Z0 | zstd -3                 {med['dump']:8.0f} ms")
print(f"airlock backup, saved (dump + digests)    {med['dumped']:8.0f} ms   {med['dumped'] / med['dump']:.2f}x the dump")
print(f"airlock backup, saved and verified        {med['backup']:8.0f} ms   "
      f"{med['backup'] / (med['dump'] + med['restore']):.2f}x dump + restore")
print(f"airlock migrate (all of it)               {med['migrate']:8.0f} ms   peak {max(results['migrate_mb']):.0f} MB")
print(f"zstd -dc | pg_restore                     {med['restore']:8.0f} ms")
print(f"airlock backup verify                     {med['verify']:8.0f} ms   {med['verify'] / med['restore']:.2f}x the restore; "
      f"peak {max(results['verify_mb']):.0f} MB")
PY
psql -q "$admin" -c 'DROP DATABASE IF EXISTS bench_backup'

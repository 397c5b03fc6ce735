#!/usr/bin/env bash
# The expand/contract benchmark: writers' latency through each phase of a
# column rename, and what the sync trigger costs each write.
#
# One table of ROWS rows (200,000 by default) on PostgreSQL,
# `accounts (id, email, note)`, and `airlock expand` of
# `ALTER TABLE accounts RENAME COLUMN email TO email_address`. pgbench
# writes all along (2 clients; each transaction updates one random row's
# email and inserts a row): the "old app" through `email` until the
# contract, the "new app" through `email_address` from the expand on. For
# each phase (nothing running; expand; backfill; constraints; both apps
# with the trigger and nothing running; contract; after it), the writers'
# p50/p99/max latency over the transactions that started during it.
#
# Then the trigger's cost per write: one client, TXNS single-row updates
# through `email` on a table without the trigger and on one with it
# (expanded), interleaved, medians.
#
# Usage: scripts/test bench/expand.sh [ROWS]     (the harness provides the server)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-200000}
TXNS=${TXNS:-20000}
RUNS=${RUNS:-3}
. bench/common.sh
bench_setup expand

admin=$AIRLOCK_TEST_POSTGRES_URL
base="${admin%/*}"
url="$base/bench_expand?sslmode=disable"

python3 - "$AIRLOCK" "$work" "$admin" "$url" "$ROWS" "$TXNS" "$RUNS" <<'PY'
import glob, os, statistics, subprocess, sys, time
airlock, work, admin, url, rows, txns, runs = sys.argv[1:]
rows, txns, runs = int(rows), int(txns), int(runs)
env = dict(os.environ, PGSSLMODE="disable")
mig = f"{work}/migrations"

def psql(sql, target=None):
    subprocess.run(["psql", "-q", target or url, "-c", sql], env=env, check=True, stdout=subprocess.DEVNULL)

def airlock_run(*args):
    subprocess.run([airlock, "--database-url", url, "--dir", mig, *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def script(name, column):
    path = f"{work}/{name}.sql"
    with open(path, "w") as f:
        f.write(f"""\\set id random(1, {rows})
\\set fresh random(100000000, 2000000000)
BEGIN;
UPDATE accounts SET {column} = 'w' || :id WHERE id = :id;
INSERT INTO accounts (id, {column}) VALUES (:fresh, 'new') ON CONFLICT DO NOTHING;
COMMIT;
""")
    return path

OLD, NEW = script("old", "email"), script("new", "email_address")

def writers(prefix, path, seconds):
    return subprocess.Popen(["pgbench", "-n", "-c", "2", "-T", str(seconds), "-f", path, "--log",
                             f"--log-prefix={work}/{prefix}", url],
                            env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def latencies(prefix, begin, end):
    out = []
    for log in glob.glob(f"{work}/{prefix}*"):
        for line in open(log):
            parts = line.split()
            if len(parts) < 6:
                continue  # the line being written when pgbench was stopped
            latency = int(parts[2]) / 1e6
            finished = int(parts[4]) + int(parts[5]) / 1e6
            if begin <= finished - latency <= end:
                out.append(latency * 1000)
    return out

def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")

def fresh_table():
    psql("DROP DATABASE IF EXISTS bench_expand", admin)
    psql("CREATE DATABASE bench_expand", admin)
    for f in glob.glob(f"{mig}/*"):
        os.remove(f)
    with open(f"{mig}/1_accounts.up.sql", "w") as f:
        f.write(f"""CREATE TABLE accounts (id bigint PRIMARY KEY, email varchar(100) NOT NULL DEFAULT '', note text);
CREATE INDEX accounts_email_idx ON accounts (email);
INSERT INTO accounts (id, email, note) SELECT i, 'seed-' || i, md5(i::text) FROM generate_series(1, {rows}) AS i;
""")
    airlock_run("migrate")
    psql("VACUUM ANALYZE accounts")
    with open(f"{mig}/2_rename_email.up.sql", "w") as f:
        f.write("ALTER TABLE accounts RENAME COLUMN email TO email_address;\n")
    airlock_run("expand", f"{mig}/2_rename_email.up.sql")
    return sorted(int(os.path.basename(p).split("_")[0]) for p in glob.glob(f"{mig}/*.up.sql"))

# Phases, with writers running throughout each.
versions = fresh_table()
expand_v, backfill_v, constraints_v = versions[1], versions[2], versions[3]
phases = []
def phase(name, apps, action=None, seconds=None):
    for f in glob.glob(f"{work}/ph*"):
        os.remove(f)
    procs = [writers(f"ph{i}_", path, 600) for i, path in enumerate(apps)]
    time.sleep(1)
    begin = time.time()
    if action:
        action()
    else:
        time.sleep(seconds)
    end = time.time()
    # pgbench buffers its log: a second more, so what is lost when it is
    # stopped comes after the phase.
    time.sleep(1)
    for p in procs:
        p.terminate(); p.wait()
    lat = []
    for i in range(len(apps)):
        lat += latencies(f"ph{i}_", begin, end)
    phases.append((name, end - begin, lat))

phase("old app alone, nothing running", [OLD], seconds=5)
phase("expand (column + trigger)", [OLD], lambda: airlock_run("migrate", "--to", str(expand_v)))
phase("backfill", [OLD], lambda: airlock_run("migrate", "--to", str(backfill_v)))
phase("constraints (index concurrently, NOT NULL check)", [OLD], lambda: airlock_run("migrate", "--to", str(constraints_v)))
phase("old and new app, expanded, nothing running", [OLD, NEW], seconds=5)
phase("contract (new app writing)", [NEW], lambda: airlock_run("migrate", "--contract"))
phase("new app alone, after the contract", [NEW], seconds=5)

print(f"rows: {rows:,}; rename of accounts.email; writers: pgbench, 2 clients per app, 1 UPDATE + 1 INSERT per transaction")
print(f"{'phase':52} {'time':>8} {'txns':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
for name, seconds, lat in phases:
    print(f"{name:52} {seconds:7.2f}s {len(lat):7} {pct(lat, 50):8.2f} {pct(lat, 99):8.2f} {pct(lat, 100):8.1f}")

# The trigger's cost per write: single-row updates through the old name,
# one client, without and with the trigger.
update = f"{work}/update.sql"
with open(update, "w") as f:
    f.write(f"\\set id random(1, {rows})\nUPDATE accounts SET email = 'u' || :id WHERE id = :id;\n")

def per_write():
    out = subprocess.run(["pgbench", "-n", "-c", "1", "-t", str(txns), "-f", update, url], env=env,
                         check=True, capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("latency average"))
    return float(line.split("=")[1].split()[0])

plain, synced = [], []
for _ in range(runs):
    fresh_table()
    psql("VACUUM ANALYZE accounts")
    plain.append(per_write())
    airlock_run("migrate", "--to", str(expand_v))
    psql("VACUUM ANALYZE accounts")
    synced.append(per_write())
p, s = statistics.median(plain), statistics.median(synced)
print(f"single-row UPDATE through the old name, 1 client, {txns} transactions, {runs} rounds, medians:")
print(f"  without the trigger {p * 1000:7.1f} µs   with it {s * 1000:7.1f} µs   the trigger adds {(s - p) * 1000:6.1f} µs per write ({s / p - 1:+.0%})")
PY
psql -q "$admin" -c 'DROP DATABASE IF EXISTS bench_expand'

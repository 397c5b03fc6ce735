# Shared by the benchmark scripts: sourced, not run.
#
# bench_setup NAME: needs the servers `scripts/test` starts, installs
# hyperfine if missing, builds the release binary into $AIRLOCK and makes a
# work directory $work (removed on exit) with a migrations folder.
bench_setup() {
  : "${AIRLOCK_TEST_POSTGRES_URL:?run through scripts/test}"
  command -v hyperfine >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null; }
  cargo build -q --release -p airlock-cli
  AIRLOCK=$PWD/target/release/airlock
  work=$(mktemp -d "/tmp/airlock-bench-$1.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/migrations"
}

# listening_address FILE: waits up to 10 s for `airlock serve`'s "listening
# on" line in FILE (its stderr) and prints the address; prints FILE and fails
# when it does not come.
listening_address() {
  local addr=
  for _ in $(seq 1 100); do
    addr=$(sed -n 's/.*listening on http:\/\/\([^ ]*\).*/\1/p' "$1")
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    sleep 0.1
  done
  cat "$1" >&2
  return 1
}

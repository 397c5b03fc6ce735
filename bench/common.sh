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

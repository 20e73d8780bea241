#!/usr/bin/env bash
# Benchmark of issue 13, item 5: reloads during a load run (see
# benches/README.md, "Issue 13: hot reload under load").
#
#   bash benches/reload.sh
#   ROUNDS=5 DURATION=20 RELOADS=20 VARIANTS=kept,changed,sighup bash benches/reload.sh
#
# Needs wrk and nginx (Debian packages): installed as root with apt-get,
# otherwise the exact command is printed. Everything listens on loopback, on
# free ports; the processes started and the temporary folder are removed at
# the end, on failure and interruption too.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh
ensure_build_deps

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
install_missing "${missing[@]}"

# load.py (imported by reload.py) runs the binaries of target/release.
export CARGO_TARGET_DIR="$PWD/target"
cargo build --release --bins --example bench_setup

work=$(mktemp -d /tmp/vigile-reload-bench.XXXXXX)
cleanup() {
  # What reload.py started and did not stop (it stops everything itself
  # unless it was killed): by the ids it wrote down.
  if [ -f "$work/pids" ]; then
    while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done < "$work/pids"
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

WORK_DIR=$work python3 benches/reload.py "$@"

#!/usr/bin/env bash
# Benchmarks of issue 12: replicas on one PostgreSQL (see benches/README.md).
#
#   bash benches/replicas.sh                 # every part: lag proxy logins startup crash
#   bash benches/replicas.sh lag crash       # some parts only
#   bash benches/replicas.sh instructions    # callgrind, redb vs postgres (only when asked)
#   ROUNDS=5 DURATION=5 LAG_LOGOUTS=300 TRIALS=20 REVOCATIONS=1000000 bash benches/replicas.sh
#
# Needs Debian's postgresql (run from a temporary cluster, as the `postgres`
# user when run as root), wrk and nginx: installed as root with apt-get,
# otherwise the exact command is printed. Everything listens on loopback, on
# free ports; processes and the temporary folder are removed at the end, on
# failure too.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh
ensure_build_deps
ensure_test_deps

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
case " $* " in
  *" instructions "*) command -v valgrind >/dev/null 2>&1 || missing+=(valgrind) ;;
esac
install_missing "${missing[@]}"

cargo build --release --bins --examples

work=$(mktemp -d /tmp/vigile-replicas-bench.XXXXXX)
cleanup() {
  # What replicas.py started and did not stop (it stops everything itself
  # unless it was killed): by the ids it wrote down.
  if [ -f "$work/pids" ]; then
    while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done < "$work/pids"
  fi
  if [ -f "$work/pg/data/postmaster.pid" ]; then
    pg_ctl=$(compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' | sort -V | tail -1)
    if [ "$(id -u)" = 0 ]; then
      runuser -u postgres -- "$pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
    else
      "$pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
    fi
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

WORK_DIR=$work python3 benches/replicas.py "$@"

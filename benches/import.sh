#!/usr/bin/env bash
# Import benchmark of issue 14 (see benches/README.md): `vigile import django`
# of USERS users (100,000 by default) made by the real Django seed rebuild,
# from its dumpdata JSON and from its SQLite file, into a fresh redb store;
# wall time and peak RSS of each run (GNU time), and a second run on the
# same store (everything unchanged).
#
#   bash benches/import.sh
#   USERS=20000 bash benches/import.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh
ensure_build_deps
ensure_django_venv
[ -x /usr/bin/time ] || install_missing time

USERS=${USERS:-100000}
cargo build --release --bin vigile
work=$(mktemp -d /tmp/vigile-import-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
target/django-venv/bin/python benches/import_data.py ../shared/django_seed "$work" "$USERS"
ls -l "$work/dump.json" "$work/db.sqlite3" | awk '{print $5, $9}'

run() { # NAME SOURCE FILE: import into a fresh store, then again into the same one
  local dir="$work/$1"
  mkdir -p "$dir"
  printf 'store:\n  path: %s/vigile.redb\ntokens:\n  secret_file: %s/secret\n' "$dir" "$dir" >"$dir/vigile.yaml"
  head -c 32 /dev/urandom | base64 >"$dir/secret"
  for pass in first second; do
    /usr/bin/time -f "$1 $pass: %e s wall, %U s user, %M KiB max RSS" \
      target/release/vigile import django "$2" "$3" --config "$dir/vigile.yaml" | grep -E '^accounts'
  done
}
run dumpdata --dumpdata "$work/dump.json"
run sqlite --sqlite "$work/db.sqlite3"

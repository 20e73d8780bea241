#!/usr/bin/env bash
# Load benchmark of vigile against a bare Pingora hop and HAProxy's jwt_verify,
# in one run on one machine (see benches/README.md).
#
#   bash benches/load.sh            # everything: proxy comparison, revoked mode, login storm, scale
#   bash benches/load.sh proxy      # only the proxy comparison (also: storm, scale)
#   ROUNDS=7 DURATION=10 bash benches/load.sh proxy
#
# Needs wrk, haproxy and nginx (Debian packages): installed as root with
# apt-get, otherwise the exact command is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh
ensure_build_deps

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "benches/load.sh needs ${missing[*]}. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

cargo build --release --bins --examples
exec python3 benches/load.py "$@"

#!/usr/bin/env bash
# Load benchmark of vigile against a bare Pingora hop and HAProxy's jwt_verify,
# in one run on one machine (see benches/README.md).
#
#   bash benches/load.sh            # everything: proxy comparison, revoked mode, login storm, scale
#   bash benches/load.sh proxy      # only the proxy comparison (also: storm, scale)
#   ROUNDS=3 bash benches/load.sh migrated   # the storm of first logins of Django accounts
#   ROUNDS=7 DURATION=10 bash benches/load.sh proxy
#   bash benches/load.sh tls        # TLS handshakes, HTTP/1.1 and HTTP/2 over TLS (h2load); handshakes also with
#                                   # the server held to half a CPU (cgroup quota, needs root; QUOTA_SHARE=0.5)
#   bash benches/load.sh h2-instructions   # instructions per HTTP/2 request over TLS (callgrind)
#
# Needs wrk, haproxy, nginx and h2load (Debian packages): installed as root with
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
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
install_missing "${missing[@]}"

cargo build --release --bins --examples
exec python3 benches/load.py "$@"

#!/usr/bin/env bash
# Sets everything up and runs vigile with the default config (config/vigile.yaml):
# embedded store in data/, demo upstreams `stocks` (127.0.0.1:9001) and `jobs`
# (127.0.0.1:9002), gateway on http://localhost:8080 and https://localhost:8443
# (HTTP/2 and HTTP/1.1, a self-signed pair made in certs/ on first run), admin
# on 127.0.0.1:9090.
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh
ensure_build_deps

cargo build --release --bins
ensure_self_signed certs

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

target/release/vigile-demo-upstream --listen 127.0.0.1:9001 --name stocks &
pids+=($!)
target/release/vigile-demo-upstream --listen 127.0.0.1:9002 --name jobs &
pids+=($!)

echo "vigile: gateway on http://localhost:8080 and https://localhost:8443, admin on http://127.0.0.1:9090 (Ctrl-C to stop)" >&2
target/release/vigile serve --config config/vigile.yaml &
pids+=($!)
wait "${pids[-1]}"

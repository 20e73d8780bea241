#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and end-to-end
# tests (these start the real binaries on loopback ports, and a PostgreSQL
# server for the postgres store's suite), the operations kit's checks
# (tests/ops: hadolint, kubectl kustomize, kubernetes-validate, promtool, a
# real Prometheus; installed by ensure_ops_deps), and one smoke run
# of each benchmark; then the end-to-end tests once more with
# `server.direct_path: false` (every request by Pingora's proxy path), and
# once more on PostgreSQL (`VIGILE_TEST_STORE=postgres`: every gateway of
# the suite on a fresh database of the test server; the few tests of the
# redb file itself stay on redb).
# Ends with the total of every run: "Summary: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh
ensure_build_deps
ensure_test_deps
ensure_django_venv
ensure_ops_deps
ensure_api_test_deps

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
VIGILE_TEST_DIRECT_PATH=true cargo test --all-targets --locked 2>&1 | tee "$log" || status=$?
echo
echo "The end-to-end tests again, with server.direct_path: false"
VIGILE_TEST_DIRECT_PATH=false cargo test --locked --test e2e 2>&1 | tee -a "$log" || status=$?
echo
echo "The end-to-end tests again, on PostgreSQL (store.kind: postgres)"
VIGILE_TEST_STORE=postgres cargo test --locked --test e2e 2>&1 | tee -a "$log" || status=$?
totals=$(awk '/^test result: / { for (i = 1; i <= NF; i++) { if ($(i + 1) ~ /^passed;/) p += $i; if ($(i + 1) ~ /^failed;/) f += $i } } END { printf "%d %d", p, f }' "$log")
echo
echo "Summary: ${totals% *} passed, ${totals#* } failed"
exit "$status"

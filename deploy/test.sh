#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and end-to-end
# tests (these start the real binaries on loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh
ensure_build_deps

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked

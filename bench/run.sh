#!/usr/bin/env bash
# Builds sessiond and the bench (release) and runs the whole benchmark, writing
# bench/RESULTS.md (and bench/RESULTS.json). Extra arguments go to sessiond-bench, e.g.
#   bench/run.sh --quick
#   bench/run.sh --sizes 10k,100k           # skip the 1M step
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin sessiond
cargo build --release -p sessiond-bench
exec target/release/sessiond-bench --out bench/RESULTS.md "$@"

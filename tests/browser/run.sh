#!/usr/bin/env bash
# Browser test: a page on one origin calls sessiond on another origin over gRPC-Web, in
# Debian's headless Chromium driven by playwright-core (see run.mjs for what it checks).
#
# Usage: tests/browser/run.sh [--screenshots] [path/to/sessiond]   (default: target/debug/sessiond)
# --screenshots also saves docs/screenshots/account-desktop.png and account-phone.png (the
# account page at /ui/ signed in, 1280 and 375 px wide).
# Installs what it needs: Debian's chromium (apt-get) when /usr/bin/chromium is missing, and
# tests/browser/node_modules (npm ci) when package-lock.json changed. Builds nothing.
# Writes tests/browser/screenshot.png (gitignored; BROWSER_SCREENSHOT=path to change).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

if [[ "${1:-}" == "--screenshots" ]]; then
  export ACCOUNT_SCREENSHOTS="$REPO/docs/screenshots"
  export PASSKEY_SCREENSHOT="$REPO/docs/screenshots/passkey.png"
  mkdir -p "$ACCOUNT_SCREENSHOTS"
  shift
fi
BIN="${1:-$REPO/target/debug/sessiond}"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
if [[ ! -x "$BIN" ]]; then
  echo "sessiond binary not found or not executable: $BIN (build it first: cargo build)" >&2
  exit 2
fi

CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
  echo "installing Debian's chromium (apt-get) ..."
  SUDO=""
  if [[ "$(id -u)" -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium >/dev/null
fi
"$CHROMIUM" --version 2>/dev/null || true

STAMP="$HERE/.stamp-node"
want="$(sha256sum "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [[ ! -d "$HERE/node_modules" || "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
  echo "installing playwright-core, esbuild and the page's libraries into $HERE/node_modules (npm ci) ..."
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$STAMP"
fi

cd "$HERE"
CHROMIUM_PATH="$CHROMIUM" timeout 300 node run.mjs "$BIN"

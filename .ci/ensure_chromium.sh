#!/usr/bin/env bash
# Make sure a headless-capable Chromium is on PATH for the browser tests in tests/dashboard/.
# Idempotent and quiet: does nothing when `chromium` (or chromium-browser / google-chrome) is already
# installed; otherwise installs Debian's `chromium` package with apt-get (needs root or sudo).
# Usage (from the repository root, before `make test`):  bash .ci/ensure_chromium.sh
set -euo pipefail
for b in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$b" >/dev/null 2>&1; then exit 0; fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "ensure_chromium: chromium is missing and we are not root (no sudo); browser tests will skip" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "ensure_chromium: installing chromium with apt-get failed (output above)" >&2
  exit 1
fi
command -v chromium >/dev/null 2>&1 || { echo "ensure_chromium: apt-get ran but chromium is not on PATH" >&2; exit 1; }

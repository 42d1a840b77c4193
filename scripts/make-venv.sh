#!/usr/bin/env bash
# Create .venv with the given Python (default python3). On Debian, `python3 -m venv` needs the
# python3-venv package; install it when venv creation fails and apt-get is available.
set -euo pipefail
PY="${1:-python3}"
VENV="${2:-.venv}"
[ -x "$VENV/bin/python" ] && exit 0
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "OTAGuard needs Python >= 3.11"' \
  || { echo "make-venv: $PY is older than 3.11" >&2; exit 1; }
if ! "$PY" -m venv "$VENV" 2>/dev/null; then
  rm -rf "$VENV"
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "python${ver}-venv" >/dev/null \
      || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
  fi
  "$PY" -m venv "$VENV"
fi

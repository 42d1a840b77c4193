#!/usr/bin/env bash
# Install the Debian packages listed in packaging/system-packages.txt that are missing, and
# start the local services the tests use if they are installed but not running.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t wanted < <(grep -v '^\s*#' packaging/system-packages.txt | awk 'NF {print $1}')
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    echo "system-deps: apt-get not found; missing: ${missing[*]} (tests needing them will skip)" >&2
  else
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "system-deps: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
if [ -x scripts/start-services.sh ]; then
  bash scripts/start-services.sh || echo "system-deps: some services could not be started" >&2
fi

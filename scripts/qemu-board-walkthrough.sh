#!/usr/bin/env bash
# docs/PROVISIONING.md, "Worked through: the QEMU board, from a fresh clone", run exactly as
# written: this script reads the sh block of that section out of the document and runs it
# (from its `make` line on: the `git clone` line is how you got here), so the document and
# what is checked cannot drift apart.
#
# Usage: scripts/qemu-board-walkthrough.sh      (PORT=... for another port than 8443)
# Run it in a clone: it makes .venv there if missing (make .venv/.run-stamp), writes
# qemu-walkthrough/ (removed first, so every run starts fresh) and stops the server it started.
set -euo pipefail
cd "$(dirname "$0")/.."
block="$(awk '
  /^### Worked through: the QEMU board/ { section = 1 }
  section && /^```sh$/ { inside = 1; next }
  inside && /^```$/ { exit }
  inside && !/^git clone / { print }
' docs/PROVISIONING.md)"
if [ -z "$block" ]; then
  echo "qemu-board-walkthrough: no sh block in docs/PROVISIONING.md's worked example" >&2
  exit 1
fi
rm -rf qemu-walkthrough
# The block under bash -e: the first command that fails stops it (and its server goes too).
exec timeout 1800 bash -euo pipefail -c "trap 'kill \$(jobs -p) 2>/dev/null || true' EXIT
$block"

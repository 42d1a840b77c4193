#!/usr/bin/env bash
# Build the QEMU board (docs/PROVISIONING.md): a GPT disk image with a FAT boot partition
# (boot.scr from packaging/u-boot/boot.cmd, otaguard.env) and two ext4 slots, each with a Debian
# cloud kernel (downloaded once with apt-get download into ~/.cache/otaguard/qemu, not installed)
# and a busybox initramfs. No root needed.
#   scripts/build-qemu-board.sh [OUTDIR]      (default: qemu-board/)
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || py=python3
exec "$py" tests/qemu/board.py "${1:-qemu-board}"

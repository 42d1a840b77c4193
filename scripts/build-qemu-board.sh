#!/usr/bin/env bash
# Build the QEMU board (docs/PROVISIONING.md): a GPT disk image with a FAT boot partition
# (boot.scr from packaging/u-boot/boot.cmd, otaguard.env) and two ext4 slots, each with a Debian
# cloud kernel (downloaded once with apt-get download into ~/.cache/otaguard/qemu, not installed)
# and a busybox initramfs. No root needed. --grub also builds disk-grub.img and grub.lnx: the
# same slots behind GRUB running packaging/grub/grub.cfg.
#   scripts/build-qemu-board.sh [OUTDIR] [--grub]      (default OUTDIR: qemu-board/)
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || py=python3
out=qemu-board
args=()
for a in "$@"; do
  case "$a" in
    --*) args+=("$a") ;;
    *) out="$a" ;;
  esac
done
exec "$py" tests/qemu/board.py "$out" "${args[@]}"

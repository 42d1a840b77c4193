#!/usr/bin/env bash
# Build U-Boot's boot.scr from packaging/u-boot/boot.cmd with mkimage (Debian: u-boot-tools).
#   packaging/u-boot/build-boot-scr.sh [OUTPUT [ARCH]]
# ARCH is mkimage's architecture name: x86 (the QEMU board), arm64 (Raspberry Pi 3/4/5), arm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-boot.scr}"
arch="${2:-x86}"
command -v mkimage >/dev/null || { echo "mkimage not found: apt-get install u-boot-tools" >&2; exit 1; }
mkimage -A "$arch" -O linux -T script -C none -n "OTAGuard A/B boot" -d "$here/boot.cmd" "$out" >/dev/null
echo "$out"

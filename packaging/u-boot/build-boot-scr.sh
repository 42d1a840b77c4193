#!/usr/bin/env bash
# Build U-Boot's boot.scr from packaging/u-boot/boot.cmd with mkimage (Debian: u-boot-tools).
#   packaging/u-boot/build-boot-scr.sh [OUTPUT [ARCH [SETTINGS]]]
# ARCH is mkimage's architecture name: x86 (the QEMU board), arm64 (Raspberry Pi 3/4/5), arm.
# SETTINGS, if given, is a file of board settings put before the script, such as
#   setenv otg_console "console=serial0,115200"
#   setenv otg_partnum_a 2
# (the otg_* names in the first section of boot.cmd).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-boot.scr}"
arch="${2:-x86}"
settings="${3:-}"
command -v mkimage >/dev/null || { echo "mkimage not found: apt-get install u-boot-tools" >&2; exit 1; }
src="$here/boot.cmd"
if [ -n "$settings" ]; then
  src="$(mktemp)"
  trap 'rm -f "$src"' EXIT
  cat "$settings" "$here/boot.cmd" > "$src"
fi
mkimage -A "$arch" -O linux -T script -C none -n "OTAGuard A/B boot" -d "$src" "$out" >/dev/null
echo "$out"

#!/usr/bin/env bash
# Power on the QEMU board once: Debian's U-Boot (qemu-x86) under TCG runs boot.scr, boots the
# slot the environment names, and the slot's init prints OTAGUARD-BOOT ... and powers off.
# The serial console is this terminal; press a key at "Hit any key" for the U-Boot prompt.
# --grub: the GRUB board instead (SeaBIOS starts qemu-board/grub.lnx, which runs grub.cfg).
#   scripts/boot-qemu-board.sh [--grub] [DISK]
#   (default DISK: qemu-board/disk.img, with --grub qemu-board/disk-grub.img)
set -euo pipefail
grub=""
if [ "${1:-}" = "--grub" ]; then grub=1; shift; fi
if [ -n "$grub" ]; then
  disk="${1:-qemu-board/disk-grub.img}"
  exec qemu-system-x86_64 -accel tcg -machine pc -m 256 \
    -kernel "$(dirname "$disk")/grub.lnx" \
    -display none -monitor none -serial stdio -nic none -no-reboot \
    -drive "file=$disk,if=ide,format=raw"
fi
disk="${1:-qemu-board/disk.img}"
exec qemu-system-x86_64 -accel tcg -machine pc -m 256 \
  -bios /usr/lib/u-boot/qemu-x86/u-boot.rom \
  -display none -monitor none -serial stdio -nic none -no-reboot \
  -drive "file=$disk,if=virtio,format=raw"

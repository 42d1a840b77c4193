# OTAGuard A/B boot script for U-Boot. Source of boot.scr: build it with
#   packaging/u-boot/build-boot-scr.sh  (mkimage -A <arch> -T script -C none, Debian u-boot-tools)
#
# Boot environment (the names otaguard.device.bootloader and the agent use):
#   boot_slot          slot to boot: a or b
#   upgrade_available  1 while boot_slot is on trial, 0 once the agent committed it
#   bootcount          trial boots attempted so far (this script counts them)
#   bootlimit          trial boots allowed before falling back to the other slot (1..9)
#   ota_attempt        the agent tag for its last switch (kept, never read here)
#
# The environment is a U-Boot environment block in a file (otaguard.env, single copy: CRC32 then
# name=value\0 entries, 0x4000 bytes) on the partition this script was loaded from: the format of
# `env export -c` and of fw_printenv with "otaguard.env 0x0 0x4000" in fw_env.config. It is not
# named uboot.env: a U-Boot built with ENV_IS_IN_FAT (Raspberry Pi) loads uboot.env as its whole
# environment at power-on, and a file holding only these variables would erase its bootcmd.
# Only the variables above are imported (a tampered file cannot set bootcmd or kernel arguments)
# and exported back; the script writes the file only during a trial, so a committed device never
# writes its flash at boot. Boards whose U-Boot keeps its own environment (ENV_IS_IN_MMC,
# redundant) set otg_env_native=1 in it: the script then uses that environment and saveenv.
#
# U-Boot without setexpr (the Debian qemu builds) cannot add, so bootcount is counted by a chain
# of string tests: 0..9, then 10 which is above every allowed bootlimit.
#
# The kernel command line names the booted slot and its trial state (otaguard.slot=a
# otaguard.trial=0); the agent reads otaguard.slot= from /proc/cmdline. The slots are found by
# GPT partition name (slot_a, slot_b), or by number on an MBR disk, and the root filesystem is
# passed as root=PARTUUID=. Board settings (the first section) can be prepended when building
# boot.scr: build-boot-scr.sh OUTPUT ARCH SETTINGS-FILE.

# -- board settings (a value already in the U-Boot environment wins) ------------------------------
if test -z "${otg_console}"; then setenv otg_console "console=ttyS0,115200"; fi
if test -z "${otg_part_a}"; then setenv otg_part_a slot_a; fi
if test -z "${otg_part_b}"; then setenv otg_part_b slot_b; fi
# otg_partnum_a/otg_partnum_b (hex partition numbers) replace the GPT names on MBR disks.
if test -z "${otg_kernel}"; then setenv otg_kernel /boot/vmlinuz; fi
if test -z "${otg_initrd}"; then setenv otg_initrd /boot/initrd.img; fi
if test -z "${otg_env_file}"; then setenv otg_env_file otaguard.env; fi
if test -z "${otg_env_size}"; then setenv otg_env_size 0x4000; fi
if test -z "${otg_env_addr}"; then setenv otg_env_addr ${kernel_addr_r}; fi
# x86: the kernel decompresses itself in place from 16 MiB up to 16 MiB + init_size (0x4378000 for
# Debian 6.1 cloud kernels), over the 0x4000000 of ramdisk_addr_r; so the initramfs (< 16 MiB) goes
# at 96 MiB, below scriptaddr (0x7000000). Needs 256 MiB of RAM.
if test -z "${otg_initrd_addr}"; then
  if test "${arch}" = "x86"; then setenv otg_initrd_addr 0x6000000; else setenv otg_initrd_addr ${ramdisk_addr_r}; fi
fi

setenv otg_vars "boot_slot upgrade_available bootcount bootlimit ota_attempt"
setenv otg_bootdev "${devtype} ${devnum}"
setenv otg_envpart "${devtype} ${devnum}:${distro_bootpart}"

# -- load the environment ------------------------------------------------------------------------
if test "${otg_env_native}" = "1"; then
  setenv otg_env_save "saveenv"
elif load ${otg_envpart} ${otg_env_addr} ${otg_env_file} && env import -c ${otg_env_addr} ${otg_env_size} ${otg_vars}; then
  setenv otg_env_save "env export -c -s ${otg_env_size} ${otg_env_addr} ${otg_vars} && save ${otg_envpart} ${otg_env_addr} ${otg_env_file} ${otg_env_size}"
else
  echo "OTAGuard: no valid boot environment in ${otg_env_file}: booting slot a, committed."
  echo "OTAGuard: write boot_slot, upgrade_available, bootcount, bootlimit (otaguard provisioning)."
  setenv otg_env_save "echo OTAGuard: no boot environment, nothing saved"
  setenv boot_slot a
  setenv upgrade_available 0
  setenv bootcount 0
fi

if test "${boot_slot}" != "b"; then setenv boot_slot a; fi
if test "${boot_slot}" = "a"; then setenv otg_other b; else setenv otg_other a; fi

# -- trial: count the boot, fall back once bootlimit trial boots went unconfirmed ----------------
setenv otg_trial 0
if test "${upgrade_available}" = "1"; then
  setenv otg_limit 3
  for n in 1 2 3 4 5 6 7 8 9; do
    if test "${bootlimit}" = "${n}"; then setenv otg_limit ${n}; fi
  done
  setenv otg_count 10
  if test "${bootcount}" = "" || test "${bootcount}" = "0"; then setenv otg_count 1; fi
  if test "${bootcount}" = "1"; then setenv otg_count 2; fi
  if test "${bootcount}" = "2"; then setenv otg_count 3; fi
  if test "${bootcount}" = "3"; then setenv otg_count 4; fi
  if test "${bootcount}" = "4"; then setenv otg_count 5; fi
  if test "${bootcount}" = "5"; then setenv otg_count 6; fi
  if test "${bootcount}" = "6"; then setenv otg_count 7; fi
  if test "${bootcount}" = "7"; then setenv otg_count 8; fi
  if test "${bootcount}" = "8"; then setenv otg_count 9; fi
  # itest reads hex: equal to decimal for 1..9, and 10 (0x10) is above every limit.
  if itest ${otg_count} -gt ${otg_limit}; then
    echo "OTAGuard: slot ${boot_slot} was not confirmed within ${otg_limit} trial boots; falling back to slot ${otg_other}"
    setenv boot_slot ${otg_other}
    if test "${boot_slot}" = "a"; then setenv otg_other b; else setenv otg_other a; fi
    setenv upgrade_available 0
    setenv bootcount 0
  else
    setenv bootcount ${otg_count}
    setenv otg_trial 1
  fi
  run otg_env_save
fi

# -- load the slot kernel and initramfs; if the slot does not load, the other one --------------
setenv otg_loaded 0
for attempt in 1 2; do
  if test "${otg_loaded}" = "0"; then
    if test "${boot_slot}" = "a"; then
      setenv otg_label ${otg_part_a}
      setenv otg_part ${otg_partnum_a}
    else
      setenv otg_label ${otg_part_b}
      setenv otg_part ${otg_partnum_b}
    fi
    if test -z "${otg_part}"; then part number ${otg_bootdev} ${otg_label} otg_part; fi
    if test -n "${otg_part}" && part uuid ${otg_bootdev}:${otg_part} otg_uuid && load ${otg_bootdev}:${otg_part} ${kernel_addr_r} ${otg_kernel} && load ${otg_bootdev}:${otg_part} ${otg_initrd_addr} ${otg_initrd}; then
      setenv otg_loaded 1
      setenv otg_initrd_size ${filesize}
    elif test "${attempt}" = "1"; then
      echo "OTAGuard: slot ${boot_slot} (${otg_label}) does not load; booting slot ${otg_other}"
      setenv boot_slot ${otg_other}
      if test "${boot_slot}" = "a"; then setenv otg_other b; else setenv otg_other a; fi
      setenv upgrade_available 0
      setenv bootcount 0
      setenv otg_trial 0
      run otg_env_save
    fi
  fi
done

if test "${otg_loaded}" = "1"; then
  setenv bootargs "${otg_console} root=PARTUUID=${otg_uuid} rootwait ro otaguard.slot=${boot_slot} otaguard.trial=${otg_trial} ${otg_extra_args}"
  echo "OTAGuard: booting slot ${boot_slot} (trial=${otg_trial}, bootcount=${bootcount})"
  if test "${arch}" = "x86"; then
    zboot ${kernel_addr_r} 0 ${otg_initrd_addr} ${otg_initrd_size}
  else
    booti ${kernel_addr_r} ${otg_initrd_addr}:${otg_initrd_size} ${fdt_addr}
    bootz ${kernel_addr_r} ${otg_initrd_addr}:${otg_initrd_size} ${fdt_addr}
  fi
fi
echo "OTAGuard: no slot could be booted"

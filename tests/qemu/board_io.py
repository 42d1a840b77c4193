"""The QEMU board's storage for an agent running on the host (scripts/qemu-board-walkthrough.sh).

board_io.py pull DISK DIR   slot partitions -> DIR/slot_a.img, DIR/slot_b.img;
                            otaguard.env -> DIR/otaguard.env
board_io.py push DISK DIR   the same files back into the disk image
board_io.py boot DISK DIR   power the board on once; its kernel command line -> DIR/cmdline,
                            then pull; prints what the board's init said
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qemu.machine import boot, boot_env, read_partition, write_partition


def pull(disk: Path, work: Path) -> None:
    for slot in ("a", "b"):
        read_partition(disk, f"slot_{slot}", work / f"slot_{slot}.img")
    with boot_env(disk) as env:
        shutil.copyfile(env.paths[0], work / "otaguard.env")


def push(disk: Path, work: Path) -> None:
    for slot in ("a", "b"):
        write_partition(disk, f"slot_{slot}", work / f"slot_{slot}.img")
    with boot_env(disk) as env:
        shutil.copyfile(work / "otaguard.env", env.paths[0])


def power_on(disk: Path, work: Path) -> None:
    result = boot(disk, log_file=work / "serial.log")
    (work / "cmdline").write_text(result.cmdline + "\n")
    pull(disk, work)
    trial = int(result.trial)
    print(f"board booted: version={result.version} slot={result.slot} trial={trial}")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("pull", "push", "boot"):
        print(__doc__, file=sys.stderr)
        return 2
    action, disk, work = argv[0], Path(argv[1]), Path(argv[2])
    {"pull": pull, "push": push, "boot": power_on}[action](disk, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The health check that decides, on the new image's trial boot, between commit and rollback.

The default runs the configured command: exit 0 is healthy. A command that cannot run or
times out counts as unhealthy (an image whose health cannot be shown is not committed).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from otaguard.device.bootloader import BootResult

HealthCheck = Callable[[BootResult], tuple[bool, str]]


def command_health_check(command: list[str], timeout: float) -> HealthCheck:
    def check(_boot: BootResult) -> tuple[bool, str]:
        if not command:
            return True, "no health command configured"
        try:
            proc = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"health command failed to run: {exc}"
        out = (proc.stdout + proc.stderr).decode(errors="replace")[-2000:]
        return proc.returncode == 0, f"exit {proc.returncode}: {out}"

    return check

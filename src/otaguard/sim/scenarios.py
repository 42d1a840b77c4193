"""Fault-injection scenarios for the lightweight fleet simulator (``sim/light.py``).

A scenario says how many devices there are, which share of them misbehaves and how, and the
rollout plan to run. Which devices misbehave is drawn from a seeded generator, so a run is
reproducible. Pure data: the simulator reads it, nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from otaguard.errors import ConfigError


class Fault(StrEnum):
    INSTALL_FAILURE = "install_failure"  # reports failed while installing
    HEALTH_FAILURE = "health_failure"  # commits, then reports worse health than control
    SILENT = "silent"  # installs, then never reports again
    BAD_SIGNATURE = "bad_signature"  # refuses the update: signed data did not verify
    DOWNGRADE = "downgrade"  # checks in with a security version below its floor
    ROGUE_FIRMWARE = "rogue_firmware"  # runs a version the repository never published
    SLOW = "slow"  # takes several rounds for each step (a slow link)
    POWER_LOSS = "power_loss"  # loses power mid-download, then resumes (or restarts) it
    DOWNLOAD_LOOP = "download_loop"  # downloads its update over and over (a retry loop)
    REPLAY = "replay"  # sends an old signed manifest again (a captured one, replayed)
    CREDENTIAL_GUESSING = "credential_guessing"  # wrong credentials from its address


@dataclass(frozen=True)
class Scenario:
    name: str
    devices: int = 200
    faults: dict[Fault, float] = field(default_factory=dict)  # fault -> share of devices
    soak_seconds: int = 0
    health_gate: bool = False
    seed: int = 1

    def plan(self) -> dict[str, Any]:
        """A 10 % -> 50 % -> 100 % plan, judged after 10 outcomes."""
        criteria: dict[str, Any] = {"min_sample": 10, "health_gate": self.health_gate}
        return {
            "phases": [
                {
                    "name": name,
                    "share": share,
                    "soak_seconds": self.soak_seconds,
                    "criteria": criteria,
                }
                for name, share in (("canary", 0.1), ("half", 0.5), ("all", 1.0))
            ]
        }


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("clean"),
        Scenario("bad-release", faults={Fault.INSTALL_FAILURE: 0.3}),
        Scenario("worse-health", faults={Fault.HEALTH_FAILURE: 1.0}, health_gate=True),
        Scenario("silent", faults={Fault.SILENT: 0.3}),
        Scenario("bad-signature", faults={Fault.BAD_SIGNATURE: 0.05}),
        Scenario("downgrade", faults={Fault.DOWNGRADE: 0.02}),
        Scenario("rogue-firmware", faults={Fault.ROGUE_FIRMWARE: 0.02}),
        Scenario("slow", faults={Fault.SLOW: 0.5}),
        Scenario("power-loss", faults={Fault.POWER_LOSS: 0.3}),
        Scenario("download-loop", faults={Fault.DOWNLOAD_LOOP: 0.02}),
        Scenario("replay", faults={Fault.REPLAY: 0.02}),
        Scenario("credential-guessing", faults={Fault.CREDENTIAL_GUESSING: 0.01}),
    )
}


def scenario(name: str, *, devices: int | None = None) -> Scenario:
    """A named scenario, optionally with another fleet size.

    Raises:
        ConfigError: no such scenario (the message lists them).
    """
    if name not in SCENARIOS:
        raise ConfigError(f"no scenario {name!r}; scenarios: {', '.join(sorted(SCENARIOS))}")
    found = SCENARIOS[name]
    if devices is None:
        return found
    return Scenario(
        found.name, devices, found.faults, found.soak_seconds, found.health_gate, found.seed
    )

"""Running many simulated devices against a server, concurrently."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from otaguard.agent.agent import Outcome
from otaguard.errors import OTAGuardError
from otaguard.sim.device import SimulatedDevice


@dataclass(frozen=True)
class DeviceRun:
    device_id: str
    version_before: str | None
    version_after: str | None
    slot_before: str | None
    slot_after: str | None
    outcomes: tuple[Outcome, ...]
    error: str = ""


def run_device(device: SimulatedDevice, max_cycles: int = 10) -> DeviceRun:
    before_v, before_s = device.version, device.slot
    try:
        outcomes = tuple(device.run_until_settled(max_cycles))
        error = ""
    except OTAGuardError as exc:  # a device never takes the simulation down with it
        outcomes, error = (), f"{type(exc).__name__}: {exc}"
    return DeviceRun(
        device.config.device_id, before_v, device.version, before_s, device.slot, outcomes, error
    )


def run_fleet(
    devices: list[SimulatedDevice],
    *,
    workers: int = 8,
    max_cycles: int = 10,
    on_done: Callable[[DeviceRun], None] | None = None,
) -> list[DeviceRun]:
    """Run every device until it settles; results in the devices' order."""
    results: dict[str, DeviceRun] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(devices)))) as pool:
        futures = {pool.submit(run_device, d, max_cycles): d for d in devices}
        for fut in as_completed(futures):
            run = fut.result()
            results[run.device_id] = run
            if on_done:
                on_done(run)
    return [results[d.config.device_id] for d in devices]

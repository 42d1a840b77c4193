"""Cut the power at every single durable operation of an update, and of a rollback.

For a scenario (an update that commits, or one whose health check fails and rolls back) a probe
device first counts the primitive storage operations (write, fsync, rename, truncate, directory
fsync; boot env and OTP writes included) of the whole run: K. Then, for every k in 1..K and for
both disk models (what was written stays, with the cut write torn; or everything not yet fsynced
is lost), a fresh device runs the same update with the power cut at operation k, then reboots
with new objects (new agent, bootloader.boot(), after_boot, run until settled). Each boot must
run a maker-signed image, and the device must settle on the old or the new committed version
with the server agreeing.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from otaguard.agent.agent import HealthCheck
from otaguard.agent.statemachine import State
from otaguard.crypto.keys import public_key_json
from otaguard.demo import HARDWARE, Demo
from otaguard.device.storage import PowerCut, PowerCutStorage, Storage
from otaguard.sim.device import Provisioning, SimulatedDevice

PAYLOAD = 150 * 1024  # three 64 KiB transfer chunks: cut points inside the download too
CHECKPOINT = 64 * 1024


@dataclass
class World:
    d: Demo
    v1: bytes
    v2: bytes
    v2_name: str
    prov: Provisioning

    def signed_image(self, raw: bytes) -> str | None:
        return {
            hashlib.sha256(self.v1).digest(): "1.0.0",
            hashlib.sha256(self.v2).digest(): "2.0.0",
        }.get(hashlib.sha256(raw).digest())


def make_world(d: Demo, payload: int = PAYLOAD) -> World:
    d.payload_size = payload
    _, v1 = d.release("1.0.0")
    v2_name, v2 = d.release("2.0.0", security_version=1)
    assert d.ctx is not None
    assert d.repo is not None
    tls = d.ctx.settings.tls
    assert tls is not None
    director_pub = d.run_dir / "director.pub.json"
    director_pub.write_text(public_key_json(d.ctx.director.public_key))
    prov = Provisioning(
        server_url=d.url,
        ca_file=tls.ca_cert,
        director_key_file=director_pub,
        trusted_root=d.repo.root_history()[0].read_bytes(),
    )
    return World(d, v1, v2, v2_name, prov)


def provision(w: World, device_id: str, tag: str, journal_seconds: float = 0.0) -> SimulatedDevice:
    assert w.d.api is not None
    key = SimulatedDevice.generate_manifest_key(w.d.run_dir / "cut" / device_id)
    credential = w.d.api.register_device(device_id, HARDWARE, [tag], manifest_key=key)
    dev = SimulatedDevice.provision(
        w.d.run_dir / "cut" / device_id,
        device_id=device_id,
        hardware=HARDWARE,
        credential=credential,
        image=w.v1,
        provisioning=w.prov,
    )
    dev.config.checkpoint_bytes = CHECKPOINT
    dev.config.checkpoint_journal_seconds = journal_seconds
    dev.config.cancel_check_seconds = 0.0
    return dev


def fresh(dev: SimulatedDevice, health: HealthCheck, storage: Storage | None) -> SimulatedDevice:
    """The same flash and config, new objects: what a reboot leaves."""
    return SimulatedDevice(
        dev.directory, dev.config, health_check=health, sleep=lambda _s: None, storage=storage
    )


def run_to_end(dev: SimulatedDevice) -> None:
    dev.power_on()
    dev.run_until_settled(max_cycles=6)


@dataclass(frozen=True)
class Scenario:
    name: str
    health: HealthCheck
    final_version: str
    final_slot: str
    final_status: str
    final_event: str
    otp: int


UPDATE = Scenario("update", lambda _b: (True, "ok"), "2.0.0", "b", "succeeded", "committed", 1)
ROLLBACK = Scenario(
    "rollback",
    lambda b: (b.slot == "a", "new image unhealthy"),
    "1.0.0",
    "a",
    "failed",
    "rolled_back",
    0,
)


def check_settled(w: World, dev: SimulatedDevice, sc: Scenario, dep_id: int, where: str) -> None:
    assert dev.agent is not None
    assert dev.boot is not None
    assert dev.agent.journal.state is State.IDLE, where
    assert not dev.agent.journal.outbox, where
    assert (dev.version, dev.slot) == (sc.final_version, sc.final_slot), where
    # What boots is byte for byte a maker-signed image, committed (not on trial).
    assert w.signed_image(dev.slots.path(dev.slot).read_bytes()) == sc.final_version, where
    env = dev.env.read()
    assert (env["boot_slot"], env["upgrade_available"]) == (sc.final_slot, "0"), where
    assert dev.otp.value() == sc.otp, where
    again = dev.bootloader.boot()
    assert (again.slot, again.trial, again.fell_back) == (sc.final_slot, False, False), where
    assert w.d.api is not None
    detail = w.d.api.device(dev.config.device_id)
    assert (detail["current_version"], detail["active_slot"]) == (sc.final_version, sc.final_slot)
    (target,) = [
        t for t in w.d.api.deployment_devices(dep_id) if t["device_id"] == dev.config.device_id
    ]
    assert (target["status"], target["last_event"]) == (sc.final_status, sc.final_event), where


def sweep(
    w: World,
    sc: Scenario,
    *,
    modes: tuple[bool, ...],
    step: int = 1,
    journal_seconds: float = 0.0,
    window: Callable[[int], range] | None = None,
) -> tuple[int, int, Counter[str]]:
    """Run the scenario once per cut point; return (K, cut points tried, cut operation kinds).
    ``window``: the operations to cut at, from the probe's count K (default: all of them)."""
    d = w.d
    assert d.api is not None
    # Probe: count the operations of an uncut run.
    probe = provision(w, f"{sc.name}-probe", f"{sc.name}-probe", journal_seconds)
    dep = d.api.create_deployment(f"{sc.name}-probe", w.v2_name, {"tag": f"{sc.name}-probe"})
    counter = PowerCutStorage()
    dev = fresh(probe, sc.health, counter)
    run_to_end(dev)
    check_settled(w, dev, sc, int(dep["id"]), "probe")
    dev.close()
    total = counter.count
    assert total > 20

    points = window(total) if window is not None else range(1, total + 1)
    cuts = [(lose, k) for lose in modes for k in points[::step]]
    tag = f"{sc.name}-cut"
    devices = [provision(w, f"{sc.name}-{int(lose)}-{k}", tag, journal_seconds) for lose, k in cuts]
    dep_id = int(d.api.create_deployment(tag, w.v2_name, {"tag": tag})["id"])
    kinds: Counter[str] = Counter()
    for (lose, k), base in zip(cuts, devices, strict=True):
        where = f"{sc.name}: cut at operation {k}/{total} ({'lose unsynced' if lose else 'torn'})"
        storage = PowerCutStorage(cut_at=k, lose_unsynced=lose)
        dev = fresh(base, sc.health, storage)
        with contextlib.suppress(PowerCut):
            run_to_end(dev)
        dev.close()
        assert storage.cut, f"{where}: the run finished before the cut"
        kinds[storage.cut_operation] += 1
        # Power back on: the boot right after the cut must run a signed image.
        dev = fresh(base, sc.health, None)
        dev.power_on()
        assert dev.slot is not None
        assert w.signed_image(dev.slots.path(dev.slot).read_bytes()) in ("1.0.0", "2.0.0"), where
        dev.run_until_settled(max_cycles=6)
        check_settled(w, dev, sc, dep_id, where)
        dev.close()
    return total, len(cuts), kinds


def cut_points(total: int, step: int) -> int:
    """How many operations a sweep with ``step`` cuts at (both disk models: twice that)."""
    return len(range(1, total + 1)[::step])


# ``make test`` cuts the update at every operation and the rollback (whose download and writes
# are the update's) at every second one; ``make test-slow`` cuts the rollback at every one too.
@pytest.mark.parametrize(
    ("scenario", "step"),
    [
        pytest.param(UPDATE, 1, id="update"),
        pytest.param(ROLLBACK, 2, id="rollback-every-second"),
        pytest.param(ROLLBACK, 1, id="rollback", marks=pytest.mark.slow),
    ],
)
def test_power_cut_at_every_operation(
    demo_world: Demo, scenario: Scenario, step: int, report_figure: Callable[[str], None]
) -> None:
    w = make_world(demo_world)
    total, tried, kinds = sweep(w, scenario, modes=(False, True), step=step)
    every = "" if step == 1 else f", one in {step},"
    report_figure(
        f"power cut, {scenario.name}: {tried} cut points tried ({total} operations{every} x 2 "
        f"disk models), all recovered; cut in: {dict(sorted(kinds.items()))}"
    )
    assert tried == 2 * cut_points(total, step)


@pytest.mark.parametrize(
    "step", [pytest.param(3, id="every-third"), pytest.param(1, id="every", marks=pytest.mark.slow)]
)
def test_power_cut_while_the_journal_lags_the_slot(
    demo_world: Demo, step: int, report_figure: Callable[[str], None]
) -> None:
    """``checkpoint_journal_seconds`` far above the download's length: every checkpoint syncs
    the slot but the journal records no progress until the download ends, so after a cut the
    agent resumes from an older offset than the slot holds and writes that part again. Every
    third cut point of the update in ``make test``, every one under ``make test-slow``; both
    disk models."""
    w = make_world(demo_world)
    total, tried, kinds = sweep(w, UPDATE, modes=(False, True), journal_seconds=1e9, step=step)
    report_figure(
        f"power cut, update with the journal lagging the slot: {tried} cut points tried "
        f"({total} operations, one in {step}, x 2 disk models), all recovered; "
        f"cut in: {dict(sorted(kinds.items()))}"
    )
    assert tried == 2 * cut_points(total, step)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("scenario", [UPDATE, ROLLBACK], ids=lambda s: s.name)
def test_power_cut_at_every_operation_of_a_larger_image(
    demo_world: Demo, scenario: Scenario, report_figure: Callable[[str], None]
) -> None:
    """The same sweep with a 1 MiB payload (16 checkpoints): many more cut points inside the
    download (``make test-slow``)."""
    w = make_world(demo_world, payload=1 << 20)
    total, tried, kinds = sweep(w, scenario, modes=(False, True))
    report_figure(
        f"power cut, {scenario.name}, 1 MiB image: {tried} cut points tried ({total} operations "
        f"x 2 disk models), all recovered; cut in: {dict(sorted(kinds.items()))}"
    )
    assert tried == 2 * total

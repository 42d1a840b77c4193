"""Cut the power at every durable operation of an update rebuilt from a delta.

The sweep of ``test_power_cut.py`` (every primitive storage operation, both disk models: torn
writes kept, or everything not fsynced lost), on an update whose image is rebuilt from a
maker-signed delta: the active slot hashed once, the patch fetched into the state directory,
checked, applied segment after segment into the inactive slot (each segment fsynced, then
journaled), the patch removed, the slot verified, switched, committed. After every cut the
device must boot a maker-signed image and settle on the old or the new committed version with
the server agreeing; the run before the sweep checks the update really went through the delta.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent.test_power_cut import ROLLBACK, UPDATE, Scenario, World, sweep
from kit.delta import images, make_patch, offer_delta, publish_delta, release_image
from otaguard.agent.delta_steps import DeltaSteps
from otaguard.crypto.keys import public_key_json
from otaguard.delta.decoder import DeltaDecoder
from otaguard.demo import Demo
from otaguard.device.storage import PowerCutStorage
from otaguard.sim.device import Provisioning

# Just over one 1 MiB segment: two segments, so cuts land inside the first segment's write,
# between the segments' checkpoints and inside the second.
SIZE = (1 << 20) + 96 * 1024


def delta_world(d: Demo, monkeypatch: pytest.MonkeyPatch, size: int) -> World:
    v1, v2 = images(size)
    release_image(d, "1.0.0", v1)
    v2_name = release_image(d, "2.0.0", v2, security_version=1)
    offer_delta(monkeypatch, v2_name, publish_delta(d, v2_name, v1, make_patch(v1, v2)))
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


def count_applies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many segments each ``DeltaDecoder.apply`` call started at (resumes included)."""
    starts: list[int] = []
    real = DeltaDecoder.apply

    def apply(self: DeltaDecoder, *args: object, **kwargs: object) -> object:
        resume = kwargs.get("resume")
        starts.append(getattr(resume, "segment", 0))
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(DeltaDecoder, "apply", apply)
    return starts


def delta_window(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], range]:
    """The cut points of the delta's own work, learnt from the probe run: every storage
    operation from the delta's choice (the active slot hashed, journaled) to the rebuilt slot
    (patch fetched, checked, applied segment by segment, removed). The rest of the update
    (check-in, accept, verify, switch, commit) is the full update's, swept by
    ``test_power_cut.py`` and here by the slow variant."""
    marks: list[int] = []
    for name in ("delta_offer", "delta_download"):
        real = getattr(DeltaSteps, name)

        def wrapped(self: DeltaSteps, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            storage = getattr(self.slots, "storage", None)
            if not isinstance(storage, PowerCutStorage) or storage.cut_at is not None:
                return _real(self, *args, **kwargs)  # only the probe (counting) is marked
            marks.append(storage.count)
            try:
                return _real(self, *args, **kwargs)
            finally:
                marks.append(storage.count)

        monkeypatch.setattr(DeltaSteps, name, wrapped)

    def window(total: int) -> range:
        assert marks, "the probe did not go through the delta"
        first, last = min(marks) + 1, max(marks)
        marks.clear()
        assert 1 <= first < last <= total
        return range(first, last + 1)

    return window


def run_sweep(
    d: Demo,
    monkeypatch: pytest.MonkeyPatch,
    scenario: Scenario,
    size: int,
    report: Callable[[str], None],
    *,
    whole: bool = True,
) -> None:
    """Every cut point of the update (``whole``), or of the delta's own work only."""
    w = delta_world(d, monkeypatch, size)
    starts = count_applies(monkeypatch)
    window = None if whole else delta_window(monkeypatch)
    total, tried, kinds = sweep(w, scenario, modes=(False, True), window=window)
    assert tried == 2 * total if whole else 0 < tried < 2 * total
    # The update went through the delta, and cuts inside the apply resumed it mid-way.
    assert starts, "no delta was applied"
    assert max(starts) >= 1, "no apply resumed at a later segment"
    report(
        f"power cut, delta {scenario.name} ({size // 1024} KiB image): {tried} cut points "
        f"tried ({'all' if whole else tried // 2} of {total} operations x 2 disk models), "
        f"all recovered; {len(starts)} applies, "
        f"{sum(1 for s in starts if s)} resumed mid-way; cut in: {dict(sorted(kinds.items()))}"
    )


@pytest.mark.timeout(900)
def test_power_cut_at_every_operation_of_a_delta_apply(
    demo_world: Demo, monkeypatch: pytest.MonkeyPatch, report_figure: Callable[[str], None]
) -> None:
    """Every cut point of the delta's own work (``delta_window``), both disk models; the
    slow variants below cut at every operation of the whole update."""
    run_sweep(demo_world, monkeypatch, UPDATE, SIZE, report_figure, whole=False)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_power_cut_at_every_operation_of_a_delta_update(
    demo_world: Demo, monkeypatch: pytest.MonkeyPatch, report_figure: Callable[[str], None]
) -> None:
    run_sweep(demo_world, monkeypatch, UPDATE, SIZE, report_figure)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("scenario", [UPDATE, ROLLBACK], ids=lambda s: s.name)
def test_power_cut_at_every_operation_of_a_larger_delta_update(
    demo_world: Demo,
    monkeypatch: pytest.MonkeyPatch,
    scenario: Scenario,
    report_figure: Callable[[str], None],
) -> None:
    """Four segments, and the rollback scenario too (``make test-slow``)."""
    run_sweep(demo_world, monkeypatch, scenario, (3 << 20) + 200 * 1024, report_figure)

"""Check-in replay over HTTP, on both paths (issue 11 item 8): a device's signed manifest
from 9 minutes ago, sent after a newer one, is refused (401 ``manifest``, counted) and does
not move the server's record back. (Both databases: tests/store/test_store_checkin_replay.py.)"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from otaguard.demo import Demo
from otaguard.store.models import Device

from .conftest import CHECKIN, World, signed_body


def test_an_old_manifest_replayed_after_a_newer_one_is_refused(world: World) -> None:
    d, dev, client = world
    assert d.ctx is not None
    now = dt.datetime.now(dt.UTC)
    old = signed_body(dev, "1.0.0", slot="a", now=now - dt.timedelta(minutes=9))
    new = signed_body(dev, "2.0.0", slot="b", now=now)
    assert client.post(CHECKIN, json=old).status_code == 200
    assert client.post(CHECKIN, json=new).status_code == 200
    for replayed in (old, new):
        r = client.post(CHECKIN, json=replayed)
        assert r.status_code == 401
        assert r.json()["error"] == "manifest"
        assert "not newer" in r.json()["detail"]
    device = d.ctx.store.get_device(dev.config.device_id)
    assert (device.current_version, device.active_slot) == ("2.0.0", "b")
    newer = signed_body(dev, "2.0.1", slot="b", now=now + dt.timedelta(seconds=1))
    assert client.post(CHECKIN, json=newer).status_code == 200


def test_same_second_older_manifest_is_refused_by_its_sequence(world: World) -> None:
    """Control first: two manifests of one second without sequence numbers (an older agent)
    -- the one signed earlier, sent last, is accepted and moves the record back. With
    sequence numbers the same order is refused (401 ``manifest``) on both paths."""
    d, dev, client = world
    assert d.ctx is not None
    base = 10**6  # above whatever the device's own agent has sent
    second = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    earlier = signed_body(dev, "1.0.0", slot="a", now=second)
    later = signed_body(dev, "2.0.0", slot="b", now=second)
    assert client.post(CHECKIN, json=later).status_code == 200
    assert client.post(CHECKIN, json=earlier).status_code == 200  # the clock rule's blind spot
    assert d.ctx.store.get_device(dev.config.device_id).current_version == "1.0.0"

    second += dt.timedelta(seconds=1)
    earlier = signed_body(dev, "1.0.0", slot="a", now=second, sequence=base + 1)
    later = signed_body(dev, "2.0.0", slot="b", now=second, sequence=base + 2)
    assert client.post(CHECKIN, json=later).status_code == 200
    r = client.post(CHECKIN, json=earlier)
    assert (r.status_code, r.json()["error"]) == (401, "manifest")
    assert "sequence 1000001 is not above the last accepted 1000002" in r.json()["detail"]
    device = d.ctx.store.get_device(dev.config.device_id)
    assert (device.current_version, device.active_slot) == ("2.0.0", "b")


def test_clock_going_back_is_accepted_when_the_sequence_rises(world: World) -> None:
    """A device whose clock went back 5 minutes (no RTC after a power loss, then a coarse
    time source) but whose sequence rose is accepted; the control without a sequence (the
    clock rule) is refused."""
    d, dev, client = world
    assert d.ctx is not None
    now = dt.datetime.now(dt.UTC)
    assert client.post(CHECKIN, json=signed_body(dev, "1.0.0", now=now, sequence=10**6)).is_success
    back = now - dt.timedelta(minutes=5)
    control = client.post(CHECKIN, json=signed_body(dev, "2.0.0", slot="b", now=back))
    assert (control.status_code, control.json()["error"]) == (401, "manifest")
    r = client.post(CHECKIN, json=signed_body(dev, "2.0.0", slot="b", now=back, sequence=10**6 + 1))
    assert r.status_code == 200, r.text
    assert d.ctx.store.get_device(dev.config.device_id).current_version == "2.0.0"


def _last_sequence(d: Demo, device_id: str) -> int | None:
    assert d.ctx is not None
    with d.ctx.store.engine.connect() as conn:
        value = conn.execute(
            select(Device.manifest_sequence).where(Device.id == device_id)
        ).scalar_one()
    return None if value is None else int(value)


def test_the_agent_numbers_its_manifests_across_reboots(world: World) -> None:
    """The real agent sends a rising sequence; a reboot (new agent process, counter read from
    its state file) goes on above it, so every check-in is accepted in order."""
    d, dev, _client = world
    dev.power_on()
    seen = []
    for _ in range(2):
        assert dev.run_once().action != "retry"
        seen.append(_last_sequence(d, dev.config.device_id))
        dev.reboot()
    assert dev.run_once().action != "retry"
    seen.append(_last_sequence(d, dev.config.device_id))
    assert None not in seen, seen
    assert seen == sorted(set(seen)), seen

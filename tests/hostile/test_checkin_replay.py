"""Check-in replay over HTTP, on both paths (issue 11 item 8): a device's signed manifest
from 9 minutes ago, sent after a newer one, is refused (401 ``manifest``, counted) and does
not move the server's record back. (Both databases: tests/store/test_store_checkin_replay.py.)"""

from __future__ import annotations

import datetime as dt

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

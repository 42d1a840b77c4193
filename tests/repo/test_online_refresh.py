"""The server re-signs timestamp and snapshot before they expire (with the online keys, the only
repository keys it holds), and a device whose clock has moved on keeps refreshing — while the
same device refuses the stale, expired timestamp had the server not re-signed it."""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Callable

import pytest
import tuf.ngclient._internal.trusted_metadata_set as tms
from tuf.api.metadata import Metadata

from otaguard.demo import Demo
from otaguard.errors import DownloadError
from otaguard.repo.online import SNAPSHOT_RESIGN_MARGIN, TIMESTAMP_RESIGN_MARGIN
from otaguard.repo.roles import utcnow
from otaguard.sim.device import SimulatedDevice


def device_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[dt.datetime], None]:
    """Set the time the device's TUF client (tuf.ngclient) checks expiry against."""

    def set_time(when: dt.datetime) -> None:
        class FrozenDatetime(dt.datetime):
            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> FrozenDatetime:  # type: ignore[override]
                return cls.fromtimestamp(when.timestamp(), tz)

        fake = types.SimpleNamespace(datetime=FrozenDatetime, timezone=dt.timezone)
        monkeypatch.setattr(tms, "datetime", fake)

    return set_time


def cached_version(dev: SimulatedDevice, role: str) -> int:
    md = Metadata.from_file(str(dev.config.tuf_dir / f"{role}.json"))
    return int(md.signed.version)


def test_online_roles_are_resigned_before_expiry_and_devices_keep_refreshing(
    demo_world: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = demo_world
    assert d.ctx is not None
    online = d.ctx.repo
    v1_name, v1 = d.release("1.0.0")
    d.provision_fleet(v1)
    dev = d.fleet[0]
    assert dev.agent is not None
    assert dev.agent.trusted_target(v1_name).length == len(v1)
    ts0, snap0 = online.timestamp(), online.snapshot()
    assert ts0 is not None
    assert snap0 is not None
    assert cached_version(dev, "timestamp") == ts0.signed.version
    set_device_time = device_clock(monkeypatch)

    # Far from expiry: nothing to do.
    assert online.refresh_online_roles(utcnow()) is False
    assert online.timestamp() == ts0

    # The device's clock is one hour past the timestamp's expiry and the server did not re-sign:
    # the device refuses the stale timestamp (TUF freeze-attack defence); since #15 an expired
    # timestamp is a transient obstacle (the device waits and retries), not a bad release.
    set_device_time(ts0.signed.expires + dt.timedelta(hours=1))
    with pytest.raises(DownloadError, match=r"timestamp\.json is expired"):
        dev.agent.trusted_target(v1_name)

    # The server's refresher runs inside the margin before expiry and re-signs timestamp only.
    server_time = ts0.signed.expires - TIMESTAMP_RESIGN_MARGIN + dt.timedelta(minutes=5)
    assert online.refresh_online_roles(server_time) is True
    ts1, snap1 = online.timestamp(), online.snapshot()
    assert ts1 is not None
    assert snap1 == snap0
    assert ts1.signed.version == ts0.signed.version + 1
    assert ts1.signed.snapshot_meta.version == snap0.signed.version
    assert ts1.signed.expires == server_time + dt.timedelta(days=1)
    root = online.root()
    assert root is not None
    root.signed.verify_delegate("timestamp", ts1.signed_bytes, ts1.signatures)
    assert online.refresh_online_roles(server_time) is False  # done: no second re-sign

    assert dev.agent.trusted_target(v1_name).length == len(v1)
    assert cached_version(dev, "timestamp") == ts1.signed.version

    # Days later, close to the snapshot's expiry: snapshot and timestamp are re-signed.
    server_time = snap0.signed.expires - SNAPSHOT_RESIGN_MARGIN + dt.timedelta(hours=1)
    assert online.refresh_online_roles(server_time) is True
    ts2, snap2 = online.timestamp(), online.snapshot()
    assert ts2 is not None
    assert snap2 is not None
    assert snap2.signed.version == snap0.signed.version + 1
    assert snap2.signed.meta == snap0.signed.meta  # same targets, only re-signed
    assert snap2.signed.expires == server_time + dt.timedelta(days=7)
    assert ts2.signed.snapshot_meta.version == snap2.signed.version
    # The timestamp refresher keeps going on; past the old snapshot's expiry the device still
    # refreshes, through the new snapshot.
    later = snap0.signed.expires - dt.timedelta(hours=1)
    assert online.refresh_online_roles(later) is True
    ts3 = online.timestamp()
    assert ts3 is not None
    assert online.snapshot() == snap2
    assert ts3.signed.snapshot_meta.version == snap2.signed.version
    set_device_time(snap0.signed.expires + dt.timedelta(hours=1))
    assert dev.agent.trusted_target(v1_name).length == len(v1)
    assert cached_version(dev, "snapshot") == snap2.signed.version

    # Back to real time: a new release is published and the device updates to it.
    monkeypatch.undo()
    v2_name, _ = d.release("2.0.0")
    d.deploy(v2_name)
    runs = d.run()
    assert all((r.version_after, r.error) == ("2.0.0", "") for r in runs)

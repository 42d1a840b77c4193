"""Indefinite freeze attack: the attacker (mirror or network) keeps serving a timestamp it
captured before release 2.0.0 existed, so the device would keep believing there is nothing new
(or, as here, never find the release it was assigned). The captured timestamp is genuine, but
it has expired by now (we produce it by signing the captured content with the server's
timestamp key and an expiry in the past: what a replayed day-old capture looks like).

Stopped by: the expiry check (``Signed.is_expired`` against the device's clock in the TUF
client): expired metadata is not trusted and the device reports that it is being frozen
("waiting: ... expired", a transient state since issue 15: it keeps retrying and installs
nothing) instead of concluding the release does not exist. With expiry checks switched off the device
accepts the stale view and reports only that the target is missing, so the frozen view goes
unnoticed: ``test_..._without_expiry_check`` shows this test then fails.
"""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from tuf.api import _payload
from tuf.api.metadata import Metadata, Timestamp

from kit.attacks import Scene, assert_refused
from otaguard.repo.roles import utcnow


def attack(scene: Scene) -> None:
    captured = scene.ctx.repo.timestamp()  # before 2.0.0 was published
    stale = Metadata(
        Timestamp(
            version=captured.signed.version,
            expires=utcnow() - dt.timedelta(hours=1),
            snapshot_meta=captured.signed.snapshot_meta,
        )
    )
    stale.sign(scene.ctx.repo.timestamp_signer)
    v2 = scene.release("2.0.0")

    def freeze(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/tuf/metadata/timestamp.json"):
            return httpx.Response(200, content=stale.to_bytes())
        return None

    scene.mitm.on_request = freeze
    since = len(scene.events())
    scene.deploy(v2)
    scene.dev.run_until_settled()
    assert_refused(scene, since=since, reason="timestamp.json is expired", event="waiting")


def test_expired_replayed_timestamp_is_refused(scene: Scene) -> None:
    attack(scene)


def test_freeze_goes_unnoticed_without_expiry_check(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_payload.Signed, "is_expired", lambda _self, _ref=None: False)
    with pytest.raises(AssertionError, match=r"device did not refuse: \['refused'"):
        attack(scene)
    last = scene.events()[-1]
    assert last["event"] == "refused"
    assert "not in the maker-signed repository" in last["detail"]["error"]

"""Check-in replay (issue 11 item 8), on both databases: a signed manifest not newer than the
device's last accepted one is refused and records nothing; the check happens in the batch
against the locked device row (no extra statement per request)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event

from otaguard.director.manifest import VersionManifest
from otaguard.errors import ManifestError, ManifestReplayError
from otaguard.store.checkin import CheckinRequest, is_replay
from otaguard.store.database import Store

HW = "hw-1"
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)


def manifest(version: str, slot: str, at: dt.datetime, nonce: str) -> VersionManifest:
    return VersionManifest(
        device_id="d1",
        hardware=HW,
        version=version,
        slot=slot,
        security_version=0,
        agent_version="t",
        nonce=nonce,
        timestamp=at.isoformat().replace("+00:00", "Z"),
    )


def test_an_older_manifest_after_a_newer_one_is_refused(store: Store) -> None:
    store.register_device("d1", HW, "cred")
    old = manifest("1.0.0", "a", T0 - dt.timedelta(minutes=9), "n-old")
    new = manifest("2.0.0", "b", T0, "n-new")
    store.check_in("d1", manifest=lambda _k: new)
    with pytest.raises(ManifestError, match="not newer"):
        store.check_in("d1", manifest=lambda _k: old)
    with pytest.raises(ManifestReplayError):  # the same one again
        store.check_in("d1", manifest=lambda _k: new)
    d = store.get_device("d1")
    assert (d.current_version, d.active_slot) == ("2.0.0", "b")
    newer = manifest("2.0.1", "b", T0, "n-other")  # same second, another nonce: a new report
    store.check_in("d1", manifest=lambda _k: newer)
    assert store.get_device("d1").current_version == "2.0.1"


def test_replay_inside_one_batch_and_no_extra_statement(store: Store) -> None:
    store.register_device("d1", HW, "cred")
    new = manifest("2.0.0", "b", T0, "n-new")
    old = manifest("1.0.0", "a", T0 - dt.timedelta(seconds=30), "n-old")
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        outcomes = store.check_in_many(
            [CheckinRequest("d1", lambda _k: new), CheckinRequest("d1", lambda _k: old)]
        )
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert outcomes[0].error is None
    assert isinstance(outcomes[1].error, ManifestReplayError)
    assert store.get_device("d1").current_version == "2.0.0"
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 2  # the locked device rows and the open targets, as before


def test_replay_rule() -> None:
    assert not is_replay(T0, "a", None, None)
    assert not is_replay(None, None, T0, "a")  # unsigned report
    assert is_replay(T0 - dt.timedelta(seconds=1), "b", T0, "a")
    assert is_replay(T0, "a", T0, "a")
    assert not is_replay(T0, "b", T0, "a")
    assert not is_replay(T0 + dt.timedelta(seconds=1), "a", T0, "a")

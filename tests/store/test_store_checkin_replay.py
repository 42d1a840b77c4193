"""Check-in replay (issue 11 item 8), on both databases: a signed manifest not newer than the
device's last accepted one is refused and records nothing; the check happens in the batch
against the locked device row (no extra statement per request). Newer means a higher sequence
number when the manifest carries one (clock-independent), else a later clock (older agents)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from sqlalchemy import event

from otaguard.director.manifest import VersionManifest
from otaguard.errors import ManifestError, ManifestReplayError
from otaguard.store.checkin import CheckinRequest
from otaguard.store.database import Store
from otaguard.store.replay import ManifestMark, is_replay

HW = "hw-1"
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)


def manifest(
    version: str, slot: str, at: dt.datetime, nonce: str, sequence: int | None = None
) -> VersionManifest:
    return VersionManifest(
        device_id="d1",
        hardware=HW,
        version=version,
        slot=slot,
        security_version=0,
        agent_version="t",
        nonce=nonce,
        timestamp=at.isoformat().replace("+00:00", "Z"),
        sequence=sequence,
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


def test_same_second_older_manifest_is_refused_by_its_sequence(store: Store) -> None:
    """The clock rule alone accepted another manifest of the same second (control below);
    with sequence numbers the lower one is refused and the record stays."""
    store.register_device("d1", HW, "cred")
    store.check_in("d1", manifest=lambda _k: manifest("2.0.0", "b", T0, "n2", sequence=8))
    older = manifest("1.0.0", "a", T0, "n1", sequence=7)  # signed earlier, same second
    with pytest.raises(ManifestReplayError, match="sequence 7 is not above the last accepted 8"):
        store.check_in("d1", manifest=lambda _k: older)
    with pytest.raises(ManifestReplayError):  # the same one again
        store.check_in("d1", manifest=lambda _k: manifest("2.0.0", "b", T0, "n2", sequence=8))
    assert store.get_device("d1").current_version == "2.0.0"
    # control: the same two without sequence numbers (an older agent) -- the clock rule
    # cannot order them, and the older one is accepted
    store.register_device("d2", HW, "cred")
    store.check_in("d2", manifest=lambda _k: manifest("2.0.0", "b", T0, "n2"))
    store.check_in("d2", manifest=lambda _k: manifest("1.0.0", "a", T0, "n1"))
    assert store.get_device("d2").current_version == "1.0.0"


def test_clock_going_back_is_not_a_replay_when_the_sequence_rises(store: Store) -> None:
    store.register_device("d1", HW, "cred")
    store.check_in("d1", manifest=lambda _k: manifest("1.0.0", "a", T0, "n1", sequence=1))
    back = manifest("2.0.0", "b", T0 - dt.timedelta(minutes=5), "n2", sequence=2)
    store.check_in("d1", manifest=lambda _k: back)
    assert store.get_device("d1").current_version == "2.0.0"


def test_fallback_to_an_agent_without_sequences_is_judged_by_its_clock(store: Store) -> None:
    """A device back on an old agent (A/B fallback) can check in; its unsequenced manifests
    follow the clock rule; the highest sequence stays, so an old sequenced one stays refused."""
    store.register_device("d1", HW, "cred")
    store.check_in("d1", manifest=lambda _k: manifest("2.0.0", "b", T0, "n1", sequence=5))
    later = T0 + dt.timedelta(seconds=30)
    store.check_in("d1", manifest=lambda _k: manifest("1.0.0", "a", later, "n2"))
    with pytest.raises(ManifestReplayError):  # older clock
        store.check_in("d1", manifest=lambda _k: manifest("1.0.0", "a", T0, "n3"))
    with pytest.raises(ManifestReplayError):  # the sequence is remembered
        store.check_in("d1", manifest=lambda _k: manifest("2.0.0", "b", later, "n4", sequence=5))
    store.check_in("d1", manifest=lambda _k: manifest("2.0.0", "b", T0, "n5", sequence=6))
    assert store.get_device("d1").current_version == "2.0.0"


def test_sequence_in_one_batch_and_reset(store: Store) -> None:
    store.register_device("d1", HW, "cred")
    outcomes = store.check_in_many(
        [
            CheckinRequest("d1", lambda _k: manifest("1.0.0", "a", T0, "a", sequence=3)),
            CheckinRequest("d1", lambda _k: manifest("0.9.0", "a", T0, "b", sequence=2)),
            CheckinRequest("d1", lambda _k: manifest("1.1.0", "a", T0, "c", sequence=4)),
            CheckinRequest("d1", lambda _k: manifest("0.8.0", "a", T0, "d")),  # same second
        ]
    )
    assert [type(o.error).__name__ for o in outcomes] == [
        "NoneType", "ManifestReplayError", "NoneType", "NoneType"
    ]  # fmt: skip
    assert store.get_device("d1").current_version == "0.8.0"
    with pytest.raises(ManifestReplayError):
        store.check_in("d1", manifest=lambda _k: manifest("1.0.0", "a", T0, "e", sequence=1))
    assert store.devices.reset_manifest_order("d1") is True  # a re-enrollment
    store.check_in("d1", manifest=lambda _k: manifest("1.0.0", "a", T0, "e", sequence=1))
    assert store.get_device("d1").current_version == "1.0.0"


SEQUENCES = (None, 1, 2, 3)
TIMES = (None, T0 - dt.timedelta(seconds=1), T0, T0 + dt.timedelta(seconds=1))
NONCES = ("a", "b")
MARKS = [ManifestMark(*m) for m in itertools.product(SEQUENCES, TIMES, NONCES)]


@pytest.mark.parametrize("last", MARKS, ids=repr)
def test_replay_rule_exhaustive(last: ManifestMark) -> None:
    """Every (new, last) combination of sequence, clock and nonce, against the rule stated
    three ways: by sequence, by clock, never for unsigned reports."""
    for new in MARKS:
        got = is_replay(new, last)
        if new.when is None:
            want = False  # unsigned report
        elif new.sequence is not None:  # the clock and nonce play no part
            want = last.sequence is not None and new.sequence <= last.sequence
        elif last.when is None:
            want = False
        else:
            want = new.when < last.when or (new.when, new.nonce) == (last.when, last.nonce)
        assert got is want, (new, last)


def test_replay_rule_properties() -> None:
    for last in MARKS:
        if last.when is not None:  # what was accepted, sent again, is always refused
            assert is_replay(last, last)
        for seq in (1, 2, 3):
            for when in TIMES[1:]:
                # a sequenced manifest above the last is accepted whatever its clock
                higher = ManifestMark((last.sequence or 0) + seq, when, "z")
                assert not is_replay(higher, last)


def test_replay_rule_examples() -> None:
    def mark(when: dt.datetime | None, nonce: str | None, seq: int | None = None) -> ManifestMark:
        return ManifestMark(seq, when, nonce)

    assert not is_replay(mark(T0, "a"), mark(None, None))
    assert not is_replay(mark(None, None), mark(T0, "a"))  # unsigned report
    assert is_replay(mark(T0 - dt.timedelta(seconds=1), "b"), mark(T0, "a"))
    assert is_replay(mark(T0, "a"), mark(T0, "a"))
    assert not is_replay(mark(T0, "b"), mark(T0, "a"))  # the clock rule's blind spot
    assert is_replay(mark(T0, "b", 1), mark(T0, "a", 2))  # closed by the sequence
    assert not is_replay(mark(T0 - dt.timedelta(hours=1), "b", 3), mark(T0, "a", 2))
    assert not is_replay(mark(T0 + dt.timedelta(seconds=1), "a"), mark(T0, "a"))


def test_a_refused_replay_reaches_the_anomaly_scan(store: Store) -> None:
    """The replay alert of fleet/integrity.py is fed by the refusals themselves: before, a
    refused replay left no observation, so the rule never fired for real check-ins."""
    from otaguard.fleet.alerts import AlertKind
    from otaguard.fleet.integrity import manifest_anomalies

    store.register_device("d1", HW, "cred")
    store.check_in("d1", manifest=lambda _k: manifest("2.0.0", "b", T0, "n2", sequence=8))
    store.checkins.observed.clear()
    with pytest.raises(ManifestReplayError):
        store.check_in("d1", manifest=lambda _k: manifest("1.0.0", "a", T0, "n1", sequence=7))
    alerts = manifest_anomalies(list(store.checkins.observed))
    assert [a.kind for a in alerts] == [AlertKind.REPLAY_ATTEMPT]
    assert "sequence 7, not above the accepted 8" in alerts[0].message

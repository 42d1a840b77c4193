"""The device's pure delta decisions (``agent/delta_choice.py``) and the delta's journal changes
(``agent/journal.py``): which offers are used, what the source check says for every case, the
fallback reasons, and that a fallback forgets the delta so it can never come back."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from tuf.api.metadata import TargetFile

from otaguard.agent.delta_choice import (
    Failure,
    Source,
    check_offer,
    delta_order,
    fallback_reason,
    on_failure,
    source_mismatch_reason,
    source_verdict,
)
from otaguard.agent.journal import (
    DeltaFallback,
    DeltaJob,
    DeltaProgress,
    EndUpdate,
    Journal,
    SlotHashed,
    SlotHolds,
    StartUpdate,
    apply_change,
)
from otaguard.agent.statemachine import Event, State, next_state
from otaguard.errors import DeltaError
from otaguard.repo.delta_targets import DeltaTarget, make_delta_target
from otaguard.repo.images import ReleaseInfo


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SRC, IMG, OTHER = sha(b"v1"), sha(b"v2"), sha(b"v1, another build")
FULL = "board/fw-2.img"


def full_target(path: str = FULL, image: str = IMG, length: int = 5000) -> TargetFile:
    t = TargetFile(length, {"sha256": image}, path)
    t.unrecognized_fields["custom"] = ReleaseInfo("2", ("board",)).to_custom()
    return t


def delta_for(full: TargetFile) -> TargetFile:
    return make_delta_target(
        full, source_sha256=SRC, source_length=4000, patch_sha256=sha(b"p"), patch_length=300
    )


def test_an_offer_that_rebuilds_the_assigned_image_is_used() -> None:
    full = full_target()
    meta = check_offer(delta_for(full), full)
    assert (meta.source_sha256, meta.target_path, meta.target_sha256) == (SRC, FULL, IMG)


@pytest.mark.parametrize(
    ("path", "image", "length"),
    [
        ("board/fw-3.img", IMG, 5000),  # another image's delta
        (FULL, OTHER, 5000),  # same name, other content
        (FULL, IMG, 5001),  # same hash claimed, other length
    ],
    ids=["other-path", "other-hash", "other-length"],
)
def test_an_offer_for_another_image_is_refused(path: str, image: str, length: int) -> None:
    delta = delta_for(full_target(path, image, length))
    with pytest.raises(DeltaError):
        check_offer(delta, full_target())


def test_an_offer_whose_signed_fields_are_not_a_delta_is_refused() -> None:
    full = full_target()
    delta = delta_for(full)
    delta.unrecognized_fields["custom"] = {"delta": {"format": "otaguard-delta/1"}}
    with pytest.raises(DeltaError):
        check_offer(delta, full)
    with pytest.raises(DeltaError):
        check_offer(full, full)  # the full image offered as its own delta


META = DeltaTarget(SRC, 4000, FULL, IMG, 5000)


@pytest.mark.parametrize(
    ("known", "verdict"),
    [(None, Source.UNKNOWN), (SRC, Source.MATCH), (OTHER, Source.MISMATCH), (IMG, Source.MISMATCH)],
)
def test_source_verdict_for_every_case(known: str | None, verdict: Source) -> None:
    assert source_verdict(META, known) is verdict
    reason = source_mismatch_reason(META, known)
    assert (reason is None) == (verdict is Source.MATCH)
    if reason is not None:
        assert "active slot" in reason


@pytest.mark.parametrize("failure", list(Failure))
def test_every_failure_has_its_own_reason(failure: Failure) -> None:
    reason = fallback_reason(failure, "details")
    assert reason.endswith(": details")
    others = {fallback_reason(f, "details") for f in Failure if f is not failure}
    assert reason not in others


def test_a_failure_falls_back_only_while_a_delta_is_in_progress() -> None:
    assert on_failure(True) is True
    assert on_failure(False) is False


JOB = DeltaJob({"path": "board/fw-2.img.from-x.otadelta", "length": 300}, "a", 4000)
START = StartUpdate(
    deployment_id=1,
    last_counter=1,
    target={"path": FULL, "length": 5000, "hashes": {"sha256": IMG}},
    target_slot="b",
    previous_slot="a",
    previous_version="1",
    new_version="2",
    security_version=0,
    attempt="t",
    delta=JOB,
)


def test_start_journals_the_delta_job_and_forgets_the_target_slot_image() -> None:
    j = Journal(slot_images={"a": SRC, "b": OTHER}, delta_fallback="old reason")
    apply_change(j, START)
    assert j.delta == JOB.to_dict()
    assert DeltaJob.from_dict(j.delta) == JOB
    assert j.delta_fallback == ""
    assert j.slot_images == {"a": SRC}  # slot b is about to be overwritten


def test_progress_fallback_and_end() -> None:
    j = Journal()
    apply_change(j, START)
    moved = DeltaJob(**{**JOB.to_dict(), "phase": "apply", "segment": 2, "offset": 99})
    apply_change(j, DeltaProgress(moved))
    assert DeltaJob.from_dict(j.delta or {}) == moved
    j.bytes_written = 7
    apply_change(j, DeltaFallback("delta does not apply: x"))
    assert (j.delta, j.delta_fallback, j.bytes_written) == (None, "delta does not apply: x", 0)
    apply_change(j, EndUpdate())
    assert (j.delta, j.delta_fallback) == (None, "")


def test_slot_images_learnt_and_forgotten() -> None:
    j = Journal()
    apply_change(j, SlotHashed("a", SRC))
    apply_change(j, SlotHolds("b", "2", IMG))
    assert j.slot_images == {"a": SRC, "b": IMG}
    apply_change(j, SlotHolds("a", None))
    assert j.slot_images == {"b": IMG}


def test_the_journal_round_trips_a_delta_job() -> None:
    j = Journal()
    apply_change(j, START)
    again = Journal.from_json(j.to_json())
    assert again.delta == j.delta


def test_a_fallback_never_loops() -> None:
    """From any point of a delta install, the fallback events lead to the full image, and a
    second failure (no delta any more) ends the update: walk every sequence of failures."""
    for failures in itertools.product([State.DOWNLOADING, State.VERIFYING], repeat=3):
        j = Journal(state=State.DOWNLOADING)
        apply_change(j, START)
        fallbacks = 0
        for where in failures:
            if j.state is State.FAILED:
                break
            j.state = where
            if on_failure(j.delta is not None):
                j.state = next_state(j.state, Event.DELTA_FALLBACK)
                apply_change(j, DeltaFallback("x"))
                fallbacks += 1
            else:
                j.state = next_state(j.state, Event.ERROR)
        assert fallbacks == 1
        assert j.state is State.FAILED


def test_offered_deltas_from_the_known_image_are_tried_first() -> None:
    mine = f"{FULL}.from-{SRC[:16]}.otadelta"
    other = f"{FULL}.from-{OTHER[:16]}.otadelta"
    assert delta_order([other, mine], SRC) == [mine, other]
    assert delta_order([mine, other], OTHER) == [other, mine]
    assert delta_order([other, mine], None) == [other, mine]  # unknown: as offered
    assert delta_order([], SRC) == []

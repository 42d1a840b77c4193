"""The agent's acceptance decisions (``agent/acceptance.py``), without slots, HTTP or disk:
assignment bytes, maker-signed target and device facts in, a release or a typed refusal out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tuf.api.metadata import Metadata, TargetFile

from otaguard.agent.acceptance import (
    DeviceFacts,
    accept_assignment,
    accept_target,
    check_release,
)
from otaguard.crypto.keys import generate_signer
from otaguard.director.assignment import sign_assignment
from otaguard.errors import AssignmentError, CompatibilityError, RepositoryError
from otaguard.repo.images import ReleaseInfo

SIGNER = generate_signer()
DEVICE = DeviceFacts(device_id="dev-1", hardware="board-a", security_version=3, last_counter=4)


def target(
    data: bytes = b"firmware",
    *,
    path: str = "board/fw-2.img",
    hardware: tuple[str, ...] = ("board-a",),
    security_version: int = 3,
) -> TargetFile:
    t = TargetFile.from_data(path, data, ["sha256"])
    t.unrecognized_fields["custom"] = ReleaseInfo("2.0", hardware, security_version).to_custom()
    return t


def assignment(**kw: Any) -> bytes:
    args: dict[str, Any] = {
        "device_id": "dev-1",
        "deployment_id": 7,
        "counter": 5,
        "target": target(),
    }
    args.update(kw)
    return sign_assignment(SIGNER, **args)


def test_a_valid_assignment_for_a_valid_target_is_accepted() -> None:
    a = accept_assignment(assignment(), SIGNER.public_key, DEVICE)
    assert (a.deployment_id, a.counter) == (7, 5)
    info = accept_target(target(), DEVICE, a)
    assert (info.version, info.hardware, info.security_version) == ("2.0", ("board-a",), 3)


@pytest.mark.parametrize(
    ("kw", "key", "message"),
    [
        ({"device_id": "dev-2"}, SIGNER.public_key, "not 'dev-1'"),
        ({"counter": 4}, SIGNER.public_key, "replay"),  # not above last_counter
        ({"counter": 1}, SIGNER.public_key, "replay"),
        ({"ttl": -dt.timedelta(seconds=1)}, SIGNER.public_key, "expired"),
        ({}, generate_signer().public_key, "not signed by the director"),
    ],
)
def test_assignment_refusals(kw: dict[str, Any], key: Any, message: str) -> None:
    with pytest.raises(AssignmentError, match=message):
        accept_assignment(assignment(**kw), key, DEVICE)


def test_a_tampered_assignment_is_refused() -> None:
    md = Metadata.from_bytes(assignment())
    md.signed.unrecognized_fields["x-otaguard"]["deployment_id"] = 8
    with pytest.raises(AssignmentError, match="does not verify"):
        accept_assignment(md.to_bytes(), SIGNER.public_key, DEVICE)


@given(st.integers(min_value=0, max_value=50), st.integers(min_value=1, max_value=50))
def test_counter_must_exceed_the_last_accepted(last: int, counter: int) -> None:
    device = DeviceFacts("dev-1", "board-a", 0, last)
    raw = assignment(counter=counter)
    if counter > last:
        assert accept_assignment(raw, SIGNER.public_key, device).counter == counter
    else:
        with pytest.raises(AssignmentError):
            accept_assignment(raw, SIGNER.public_key, device)


@pytest.mark.parametrize(
    ("signed", "message"),
    [
        (target(path="board/other.img"), "name differs"),
        (target(b"firmware!"), "length differs"),
        (target(b"firmwarE"), "hashes differ"),
    ],
)
def test_the_assigned_target_must_be_the_maker_signed_one(signed: TargetFile, message: str) -> None:
    a = accept_assignment(assignment(), SIGNER.public_key, DEVICE)
    with pytest.raises(AssignmentError, match=message):
        accept_target(signed, DEVICE, a)


@pytest.mark.parametrize(
    ("hardware", "device_hw", "ok"),
    [
        (("board-a",), "board-a", True),
        (("board-b", "board-a"), "board-a", True),
        (("board-b",), "board-a", False),
        (("board-a",), "board-A", False),
    ],
)
def test_hardware_check(hardware: tuple[str, ...], device_hw: str, ok: bool) -> None:
    device = DeviceFacts("dev-1", device_hw, 0, 0)
    if ok:
        assert check_release(target(hardware=hardware), device).hardware == hardware
    else:
        with pytest.raises(CompatibilityError, match=f"not {device_hw}"):
            check_release(target(hardware=hardware), device)


@given(st.integers(min_value=0, max_value=100), st.integers(min_value=0, max_value=100))
def test_anti_rollback_check(release: int, counter: int) -> None:
    device = DeviceFacts("dev-1", "board-a", counter, 0)
    t = target(security_version=release)
    if release >= counter:
        assert accept_target(t, device).security_version == release
    else:
        with pytest.raises(CompatibilityError, match="anti-rollback counter"):
            accept_target(t, device)


def test_a_target_without_release_metadata_is_refused() -> None:
    bare = TargetFile.from_data("board/fw-2.img", b"firmware", ["sha256"])
    with pytest.raises(RepositoryError):
        accept_target(bare, DEVICE)


def test_checks_run_in_order_match_before_hardware() -> None:
    """A target that is both not the assigned one and for other hardware is refused as a
    mismatch: the assignment match comes first."""
    a = accept_assignment(assignment(), SIGNER.public_key, DEVICE)
    with pytest.raises(AssignmentError):
        accept_target(target(b"other", hardware=("board-b",)), DEVICE, a)

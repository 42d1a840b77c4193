from __future__ import annotations

import datetime as dt

import pytest
from tuf.api.metadata import Metadata, TargetFile

from otaguard.crypto.keys import generate_signer
from otaguard.director.assignment import (
    matches_repository,
    sign_assignment,
    verify_assignment,
)
from otaguard.errors import AssignmentError

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _target(data: bytes = b"firmware") -> TargetFile:
    return TargetFile.from_data("board/fw-2.img", data, ["sha256"])


def _sign(signer, **kw):  # type: ignore[no-untyped-def]
    args = {"device_id": "dev-1", "deployment_id": 7, "counter": 5, "target": _target(), "now": NOW}
    args.update(kw)
    return sign_assignment(signer, **args)


def test_valid_assignment_verifies() -> None:
    signer = generate_signer()
    a = verify_assignment(
        _sign(signer), signer.public_key, device_id="dev-1", min_counter=5, now=NOW
    )
    assert (a.device_id, a.deployment_id, a.counter) == ("dev-1", 7, 5)
    assert a.target.path == "board/fw-2.img"
    assert len(a.nonce) == 32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device_id": "dev-2"}, "not 'dev-2'"),
        ({"min_counter": 6}, "replay"),
        ({"now": NOW + dt.timedelta(hours=2)}, "expired"),
    ],
)
def test_assignment_checks(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    signer = generate_signer()
    args = {"device_id": "dev-1", "min_counter": 1, "now": NOW, **kwargs}
    with pytest.raises(AssignmentError, match=message):
        verify_assignment(_sign(signer), signer.public_key, **args)


def test_other_key_and_tampering_are_refused() -> None:
    signer, other = generate_signer(), generate_signer()
    data = _sign(signer)
    with pytest.raises(AssignmentError, match="not signed by the director"):
        verify_assignment(data, other.public_key, device_id="dev-1", min_counter=1, now=NOW)
    md = Metadata.from_bytes(data)
    md.signed.unrecognized_fields["x-otaguard"]["device_id"] = "dev-9"
    with pytest.raises(AssignmentError, match="does not verify"):
        verify_assignment(
            md.to_bytes(), signer.public_key, device_id="dev-9", min_counter=1, now=NOW
        )
    with pytest.raises(AssignmentError, match="not valid metadata"):
        verify_assignment(
            b"{not json", signer.public_key, device_id="dev-1", min_counter=1, now=NOW
        )


def test_counter_must_be_positive() -> None:
    with pytest.raises(AssignmentError):
        _sign(generate_signer(), counter=0)


def test_assignment_must_match_maker_signed_target() -> None:
    signer = generate_signer()
    a = verify_assignment(
        _sign(signer), signer.public_key, device_id="dev-1", min_counter=1, now=NOW
    )
    matches_repository(a, _target())
    with pytest.raises(AssignmentError, match="hashes"):
        matches_repository(a, _target(b"firmwarX"))
    with pytest.raises(AssignmentError, match="length"):
        matches_repository(a, _target(b"firmware-longer"))
    other = TargetFile.from_data("board/other.img", b"firmware", ["sha256"])
    with pytest.raises(AssignmentError, match="name"):
        matches_repository(a, other)


DELTA = "board/fw-2.img.from-0123456789abcdef.otadelta"


def test_assignment_carries_an_offered_delta_and_defaults_to_none() -> None:
    signer = generate_signer()
    plain = verify_assignment(
        _sign(signer), signer.public_key, device_id="dev-1", min_counter=1, now=NOW
    )
    assert plain.delta_path is None
    assert (
        "delta" not in Metadata.from_bytes(_sign(signer)).signed.unrecognized_fields["x-otaguard"]
    )
    a = verify_assignment(
        _sign(signer, delta_path=DELTA),
        signer.public_key,
        device_id="dev-1",
        min_counter=1,
        now=NOW,
    )
    assert a.delta_path == DELTA


def test_assignment_signature_covers_the_delta_field() -> None:
    signer = generate_signer()
    md = Metadata.from_bytes(_sign(signer))
    md.signed.unrecognized_fields["x-otaguard"]["delta"] = DELTA  # added after signing
    with pytest.raises(AssignmentError, match="does not verify"):
        verify_assignment(
            md.to_bytes(), signer.public_key, device_id="dev-1", min_counter=1, now=NOW
        )
    md = Metadata.from_bytes(_sign(signer, delta_path=DELTA))
    md.signed.unrecognized_fields["x-otaguard"]["delta"] = DELTA.replace("0123", "3210")
    with pytest.raises(AssignmentError, match="does not verify"):
        verify_assignment(
            md.to_bytes(), signer.public_key, device_id="dev-1", min_counter=1, now=NOW
        )


@pytest.mark.parametrize(
    "bad",
    [
        "board/fw-3.img.from-0123456789abcdef.otadelta",  # a delta of another image
        "board/fw-2.img.from-0123456789abcde.otadelta",  # short source prefix
        "board/fw-2.img.from-0123456789ABCDEF.otadelta",  # not lower-case hex
        "board/fw-2.img.from-0123456789abcdef.img",  # not a delta
        "board/fw-2.img",
    ],
)
def test_signing_refuses_a_delta_that_is_not_of_the_assigned_image(bad: str) -> None:
    with pytest.raises(AssignmentError, match="not a delta path"):
        _sign(generate_signer(), delta_path=bad)


@pytest.mark.parametrize("bad", [7, ["x"], "board/fw-3.img.from-0123456789abcdef.otadelta"])
def test_verify_refuses_a_signed_but_malformed_delta_field(bad: object) -> None:
    signer = generate_signer()
    md = Metadata.from_bytes(_sign(signer))
    md.signed.unrecognized_fields["x-otaguard"]["delta"] = bad
    md.signatures.clear()
    md.sign(signer)  # the director itself signed nonsense: still refused
    with pytest.raises(AssignmentError, match="not a delta path"):
        verify_assignment(
            md.to_bytes(), signer.public_key, device_id="dev-1", min_counter=1, now=NOW
        )

"""Per-device assignments signed by the director's online key (Uptane-style).

An assignment is TUF targets metadata (a format any TUF library parses) naming exactly one
target for exactly one device, with a short expiry, a per-device counter (its ``version``) and a
nonce in an ``x-otaguard`` field. The device installs a target only if

* the assignment verifies with the pinned director key, names this device, is not expired and
  its counter is not lower than the last one the device accepted (no replay), and
* the same target, with the same hashes and length, is in the maker-signed image repository.

So the director decides *which* maker-signed image a device gets and *when*; it can never make a
device install something the maker did not sign.

When the device's signed manifest reports exactly the source image of a maker-signed delta of
the assigned image, the ``x-otaguard`` field also names that delta target (``"delta": path``,
covered by the signature). The device still fetches the delta through TUF (verified before it
is decoded) and checks its signed custom metadata (``repo/delta_targets.py``) itself.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.api.serialization import DeserializationError

from otaguard.errors import AssignmentError, DeltaMetadataError
from otaguard.repo.delta_targets import SOURCE_PREFIX_HEX, SUFFIX, delta_path_prefix
from otaguard.repo.roles import utcnow

ASSIGNMENT_TTL = dt.timedelta(hours=1)
FIELD = "x-otaguard"


@dataclass(frozen=True)
class Assignment:
    device_id: str
    deployment_id: int
    counter: int
    nonce: str
    target: TargetFile
    expires: dt.datetime
    #: the delta target (in the maker's repository) the device may use instead of the image
    delta_path: str | None = None


def sign_assignment(
    signer: Signer,
    *,
    device_id: str,
    deployment_id: int,
    counter: int,
    target: TargetFile,
    delta_path: str | None = None,
    ttl: dt.timedelta = ASSIGNMENT_TTL,
    now: dt.datetime | None = None,
) -> bytes:
    """Signed assignment bytes for ``device_id`` to install ``target`` (optionally offering
    the delta target ``delta_path`` that rebuilds it)."""
    if counter < 1:
        raise AssignmentError("assignment counter must be >= 1")
    info: dict[str, Any] = {
        "device_id": device_id,
        "deployment_id": deployment_id,
        "nonce": secrets.token_hex(16),
    }
    if delta_path is not None:
        info["delta"] = check_delta_path(delta_path, target.path)
    signed = Targets(
        version=counter,
        expires=(now or utcnow()) + ttl,
        targets={target.path: TargetFile(target.length, dict(target.hashes), target.path)},
        unrecognized_fields={FIELD: info},
    )
    md = Metadata(signed)
    md.sign(signer)
    return md.to_bytes()


def verify_assignment(
    data: bytes,
    director_key: Key,
    *,
    device_id: str,
    min_counter: int,
    now: dt.datetime | None = None,
) -> Assignment:
    """Parse and check an assignment: director signature, device binding, expiry, counter
    (at least ``min_counter``: anti-replay) and exactly one target.

    Raises:
        AssignmentError: a check failed (the message names it); the device refuses the
            assignment and never retries the same bytes.
    """
    try:
        md = Metadata[Targets].from_bytes(data)
    except (DeserializationError, ValueError, TypeError) as exc:
        raise AssignmentError(f"assignment is not valid metadata: {exc}") from exc
    if not isinstance(md.signed, Targets):
        raise AssignmentError("assignment is not targets metadata")
    sig = md.signatures.get(director_key.keyid)
    if sig is None:
        raise AssignmentError("assignment is not signed by the director key")
    try:
        director_key.verify_signature(sig, md.signed_bytes)
    except UnsignedMetadataError as exc:
        raise AssignmentError("assignment signature does not verify") from exc
    except Exception as exc:
        raise AssignmentError(f"assignment signature does not verify: {exc}") from exc
    info: Any = md.signed.unrecognized_fields.get(FIELD)
    if not isinstance(info, dict):
        raise AssignmentError("assignment lacks its device binding")
    if info.get("device_id") != device_id:
        raise AssignmentError(
            f"assignment is for device {info.get('device_id')!r}, not {device_id!r}"
        )
    if md.signed.is_expired(now or utcnow()):
        raise AssignmentError(f"assignment expired at {md.signed.expires.isoformat()}")
    if md.signed.version < min_counter:
        raise AssignmentError(
            f"assignment counter {md.signed.version} is below the last accepted {min_counter} (replay)"
        )
    if len(md.signed.targets) != 1:
        raise AssignmentError("assignment must name exactly one target")
    (target,) = md.signed.targets.values()
    delta = info.get("delta")
    return Assignment(
        device_id=device_id,
        deployment_id=int(info.get("deployment_id", 0)),
        counter=md.signed.version,
        nonce=str(info.get("nonce", "")),
        target=target,
        expires=md.signed.expires,
        delta_path=None if delta is None else check_delta_path(delta, target.path),
    )


def check_delta_path(value: Any, target_path: str) -> str:
    """An assignment's delta field: a delta target path of the assigned ``target_path``.

    Raises:
        AssignmentError: not a string, or not a delta path of that image.
    """
    try:
        prefix = delta_path_prefix(target_path)
    except DeltaMetadataError as exc:
        raise AssignmentError(f"assigned target cannot have a delta: {exc}") from exc
    source = value[len(prefix) : -len(SUFFIX)] if isinstance(value, str) else ""
    if (
        not isinstance(value, str)
        or not value.startswith(prefix)
        or not value.endswith(SUFFIX)
        or len(source) != SOURCE_PREFIX_HEX
        or not all(c in "0123456789abcdef" for c in source)
    ):
        raise AssignmentError(f"assignment's delta is not a delta path of {target_path}")
    return value


def matches_repository(assignment: Assignment, repo_target: TargetFile) -> None:
    """The assigned target must be the maker-signed one, byte for byte (length and hashes)."""
    if assignment.target.path != repo_target.path:
        raise AssignmentError("assigned target name differs from the repository target")
    if assignment.target.length != repo_target.length:
        raise AssignmentError("assigned target length differs from the maker-signed length")
    if assignment.target.hashes != repo_target.hashes:
        raise AssignmentError("assigned target hashes differ from the maker-signed hashes")

"""Whether the device accepts an update, as pure checks: bytes and values in, a verdict out.

In the manner of python-tuf's ``TrustedMetadataSet``: the director assignment arrives as bytes,
the maker-signed target as the ``TargetFile`` the TUF client already verified, the device's own
facts (hardware type, anti-rollback counter, highest counter seen) as plain values. No disk,
no network, no slot: the agent fetches, then asks here, then journals what this returns.

The order is the one the design promises: the assignment (signature, device, expiry, counter),
then its match with the maker-signed target (name, length, hashes), then the device's own
hardware and anti-rollback checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from securesystemslib.signer import Key
from tuf.api.metadata import TargetFile

from otaguard.director.assignment import Assignment, matches_repository, verify_assignment
from otaguard.errors import CompatibilityError
from otaguard.repo.images import ReleaseInfo


@dataclass(frozen=True)
class DeviceFacts:
    """What the device knows about itself when it judges a release."""

    device_id: str
    hardware: str
    security_version: int  # the anti-rollback counter (OTP)
    last_counter: int  # highest director assignment counter accepted so far


def accept_assignment(raw: bytes, director_key: Key, device: DeviceFacts) -> Assignment:
    """The director assignment, if it is signed by the director for this device, unexpired,
    and newer than every assignment accepted before (anti-replay).

    Raises:
        AssignmentError: a check failed; the device refuses the assignment and reports it.
    """
    return verify_assignment(
        raw, director_key, device_id=device.device_id, min_counter=device.last_counter + 1
    )


def check_release(target: TargetFile, device: DeviceFacts) -> ReleaseInfo:
    """The device's own checks of a maker-signed release: hardware type, anti-rollback.

    Raises:
        CompatibilityError: the release is for other hardware, or its security version is
            below the device's anti-rollback counter.
        RepositoryError: the target's custom metadata does not describe a release.
    """
    info = ReleaseInfo.of_target(target)
    if device.hardware not in info.hardware:
        raise CompatibilityError(
            f"release is for {', '.join(info.hardware)}, not {device.hardware}"
        )
    if info.security_version < device.security_version:
        raise CompatibilityError(
            f"release security version {info.security_version} is below this device's "
            f"anti-rollback counter {device.security_version}"
        )
    return info


def accept_target(
    target: TargetFile, device: DeviceFacts, assignment: Assignment | None = None
) -> ReleaseInfo:
    """The release the device will install: ``target`` (verified by the TUF client) must be
    exactly the assigned one, when there is an assignment (offline bundles have none), and
    pass ``check_release``.

    Raises:
        AssignmentError: the assigned name, length or hashes differ from the maker-signed ones.
        CompatibilityError: see ``check_release``.
        RepositoryError: see ``check_release``.
    """
    if assignment is not None:
        matches_repository(assignment, target)
    return check_release(target, device)

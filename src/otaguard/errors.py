"""One exception hierarchy for OTAGuard.

Every failure a caller may want to react to is an ``OTAGuardError``; the device side never lets
anything else escape the update loop (it reports it, typed, and keeps running its current image).
"""

from __future__ import annotations


class OTAGuardError(Exception):
    """Base of every error OTAGuard raises on purpose."""

    code = "error"


class ConfigError(OTAGuardError):
    """A configuration value or file is missing or invalid."""

    code = "config"


class KeyMaterialError(OTAGuardError):
    """A key could not be generated, loaded or used (wrong passphrase, wrong type...)."""

    code = "key"


class RepositoryError(OTAGuardError):
    """The signed image repository is inconsistent or an operation on it is not allowed."""

    code = "repository"


class VerificationError(OTAGuardError):
    """Signed data or downloaded bytes failed verification. A device must refuse what raised it."""

    code = "verification"


class AssignmentError(VerificationError):
    """A director assignment is invalid for this device (signature, expiry, device, replay)."""

    code = "assignment"


class CompatibilityError(OTAGuardError):
    """A release does not fit a device (hardware type, anti-rollback security version)."""

    code = "compatibility"


class DownloadError(OTAGuardError):
    """A transfer failed. ``permanent`` errors (4xx, missing artifact) are not retried."""

    code = "download"

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ReplyError(DownloadError):
    """A server's reply is not what the protocol says (not JSON, wrong shape or types). The
    client refuses it as a whole; like any failed exchange with the server it is retried."""

    code = "reply"


class InstallError(OTAGuardError):
    """Writing or verifying a slot failed."""

    code = "install"


class BootError(OTAGuardError):
    """The simulated bootloader could not boot any slot."""

    code = "boot"


class StoreError(OTAGuardError):
    """The database or blob store refused an operation."""

    code = "store"


class NotFoundError(StoreError):
    """A requested record or blob does not exist."""

    code = "not_found"


class PayloadTooLargeError(StoreError):
    """A request body or upload is larger than the server accepts."""

    code = "too_large"


class StoreBusyError(StoreError):
    """The database is held by another writer of this process and the caller asked not to
    wait (it tries again where waiting is cheap)."""

    code = "busy"


class ConflictError(StoreError):
    """The operation conflicts with the current state (duplicate, wrong state...)."""

    code = "conflict"


class RequestFormatError(OTAGuardError):
    """A request body that is not what the route reads: not valid UTF-8 JSON (400)."""

    code = "bad_request"


class UnsupportedMediaTypeError(RequestFormatError):
    """A request body of a content type the route does not read (415)."""

    code = "unsupported_media_type"


class AuthError(OTAGuardError):
    """Authentication or authorization failed."""

    code = "auth"


class ManifestError(AuthError):
    """A device's signed version manifest is missing, malformed or does not verify with the
    key registered for the device: nothing it reports is recorded."""

    code = "manifest"


class ManifestReplayError(ManifestError):
    """A signed version manifest that is not newer than the device's last accepted one (a
    replay, or a device clock that went back): nothing is recorded."""


class ForbiddenError(AuthError):
    """Authenticated, but not allowed to do this (role, token scope, two-person rule)."""

    code = "forbidden"


class RateLimitedError(AuthError):
    """Too many failed attempts from one client: refused for a while."""

    code = "rate_limited"


class LoginBusyError(RateLimitedError):
    """Too many password checks in progress on this server (``identity/verify_gate.py``):
    refused before any work, retry shortly. Not a failed login: counts towards no lock-out."""

    code = "login_busy"


class PolicyError(OTAGuardError):
    """A rollout, health-gate or anomaly policy value is invalid. ``problems`` lists every fault
    found, so an operator fixes them in one go rather than one per request."""

    code = "policy"

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class RolloutPlanError(PolicyError):
    """A phased rollout plan is invalid (phase shares, soak times, success criteria, limits)."""

    code = "rollout_plan"


class MaintenanceWindowError(PolicyError):
    """A device's maintenance window spec cannot be parsed (days, times or time zone)."""

    code = "maintenance_window"


class GroupFilterError(PolicyError):
    """A saved dynamic group's filter is invalid (unknown attribute, an operator that does not
    apply to it, a value of the wrong type); ``problems`` lists every fault."""

    code = "group_filter"


class RolloutStateError(ConflictError):
    """An operator action does not fit the rollout's state (advance a paused rollout, resume
    one that is not paused, act on one that has ended)."""

    code = "rollout_state"


class DownloadCancelled(DownloadError):
    """The transfer was stopped on purpose (the server cancelled the deployment)."""

    code = "cancelled"

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class WakeUpError(VerificationError):
    """A push wake-up that is not a valid one for this device (signature, device, age, form);
    the device ignores it and keeps its poll schedule."""

    code = "wakeup"


class BundleError(VerificationError):
    """The bundle file is not a well-formed OTAGuard bundle."""

    code = "bundle"


class ApiError(OTAGuardError):
    """The management API answered with an error status (``status``, the server's detail)."""

    code = "api"

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


class InvalidTransition(OTAGuardError):
    """The agent's state machine has no transition for this state and event (a bug, or a
    journal edited by hand)."""

    code = "state"


class RangeNotSatisfiable(OTAGuardError):
    """An HTTP Range header asks for no byte of the representation (answered 416)."""

    code = "range_not_satisfiable"


class DeltaError(OTAGuardError):
    """A delta patch could not be made or applied. A device falls back to the full image."""

    code = "delta"


class DeltaFormatError(DeltaError):
    """A patch is malformed: bad magic or version, a length over its limit, a truncated or
    corrupt stream, an instruction outside the source or the target."""

    code = "delta_format"


class DeltaSourceMismatchError(DeltaError):
    """The patch was made from another source image than the one it is applied to."""

    code = "delta_source"


class DeltaTargetMismatchError(DeltaError):
    """The rebuilt image does not have the size or sha256 the patch (or the caller) expects."""

    code = "delta_target"


class DeltaMetadataError(DeltaError, RepositoryError):
    """A delta target's signed custom metadata has not the shape ``repo/delta_targets.py``
    defines, or does not fit the full image it claims to rebuild. A device falls back to the
    full image (a ``DeltaError``); a publication naming it is refused (a ``RepositoryError``)."""

    code = "delta_metadata"

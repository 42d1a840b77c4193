"""Shared TUF helpers: role names, default expiries, threshold status of signed metadata."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

ROOT = Root.type
TARGETS = Targets.type
SNAPSHOT = Snapshot.type
TIMESTAMP = Timestamp.type
TOP_LEVEL_ROLES = (ROOT, TARGETS, SNAPSHOT, TIMESTAMP)

DEFAULT_EXPIRY: dict[str, dt.timedelta] = {
    ROOT: dt.timedelta(days=365),
    TARGETS: dt.timedelta(days=90),
    SNAPSHOT: dt.timedelta(days=7),
    TIMESTAMP: dt.timedelta(days=1),
}

SPEC_VERSION = "1.0.31"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def expiry_for(role: str, now: dt.datetime | None = None) -> dt.datetime:
    return (now or utcnow()) + DEFAULT_EXPIRY.get(role, DEFAULT_EXPIRY[TARGETS])


@dataclass(frozen=True)
class SignatureStatus:
    """How far a role's metadata is from being valid."""

    role: str
    version: int
    threshold: int
    signed_by: tuple[str, ...]
    missing_keys: tuple[str, ...]
    expires: dt.datetime
    #: set when the signatures are judged by other keys than the role's own (a new root
    #: version must also meet the previous root's threshold), e.g. "root v1 keys"
    judged_by: str | None = None

    @property
    def valid(self) -> bool:
        return len(self.signed_by) >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "version": self.version,
            "threshold": self.threshold,
            "signatures": len(self.signed_by),
            "valid": self.valid,
            "expires": self.expires.isoformat(),
            "missing_keys": list(self.missing_keys),
            **({"judged_by": self.judged_by} if self.judged_by else {}),
        }


def signature_status(delegator: Metadata[Any], role: str, md: Metadata[Any]) -> SignatureStatus:
    """Threshold status of ``md`` (of ``role``) as judged by ``delegator``'s keys."""
    result = delegator.signed.get_verification_result(role, md.signed_bytes, md.signatures)
    return SignatureStatus(
        role=role,
        version=md.signed.version,
        threshold=result.threshold,
        signed_by=tuple(sorted(result.signed)),
        missing_keys=tuple(sorted(result.unsigned)),
        expires=md.signed.expires,
    )


def root_statuses(previous: Metadata[Any] | None, new: Metadata[Any]) -> list[SignatureStatus]:
    """Threshold status of root ``new``: by its own keys and, for a rotation (version > 1), by
    the previous root's keys too; TUF accepts the new root only when both are met."""
    own = signature_status(new, ROOT, new)
    if previous is None:
        return [own]
    by_previous = signature_status(previous, ROOT, new)
    by_previous = SignatureStatus(
        role=ROOT,
        version=by_previous.version,
        threshold=by_previous.threshold,
        signed_by=by_previous.signed_by,
        missing_keys=by_previous.missing_keys,
        expires=by_previous.expires,
        judged_by=f"root v{previous.signed.version} keys",
    )
    return [own, by_previous]

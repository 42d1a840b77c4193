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

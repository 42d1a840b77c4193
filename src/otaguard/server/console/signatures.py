"""Who signed each release: the threshold status of the TUF role that lists the release's
target, as a device would find it (delegations followed like ``tuf.ngclient``), judged by the
keys of the role that delegates to it. Read from the published metadata, never assumed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tuf.api.metadata import Metadata, Targets

from otaguard.repo import delegation
from otaguard.repo.online import OnlineRepository
from otaguard.repo.roles import TARGETS, SignatureStatus, signature_status


@dataclass(frozen=True)
class ReleaseSignature:
    role: str
    status: SignatureStatus | None  # None: the target is not in the published metadata

    @property
    def threshold_met(self) -> bool:
        return self.status is not None and self.status.valid

    def expired(self, now: dt.datetime) -> bool:
        return self.status is not None and self.status.expires <= now


def _delegates_to(md: Metadata[Any], role: str) -> bool:
    dl = md.signed.delegations if isinstance(md.signed, Targets) else None
    if dl is None:
        return False
    if dl.roles is not None and role in dl.roles:
        return True
    return dl.succinct_roles is not None and dl.succinct_roles.is_delegated_role(role)


def release_signatures(repo: OnlineRepository, names: Iterable[str]) -> dict[str, ReleaseSignature]:
    """The signature status of each target name (metadata read once per role)."""
    root = repo.root()
    snapshot = repo.snapshot()
    loaded: dict[str, Metadata[Targets] | None] = {}

    def load(role: str) -> Metadata[Targets] | None:
        if role not in loaded:
            loaded[role] = repo.role_targets(role, snapshot) if snapshot else None
        return loaded[role]

    statuses: dict[str, SignatureStatus | None] = {}

    def status_of(role: str) -> SignatureStatus | None:
        if role not in statuses:
            md = load(role)
            parent: Metadata[Any] | None = root if role == TARGETS else None
            if role != TARGETS:
                parent = next(
                    (m for m in loaded.values() if m is not None and _delegates_to(m, role)), None
                )
            statuses[role] = (
                None if md is None or parent is None else signature_status(parent, role, md)
            )
        return statuses[role]

    out: dict[str, ReleaseSignature] = {}
    for name in names:
        found = delegation.resolve_target(load, name) if root is not None else None
        role = found[0] if found else ""
        out[name] = ReleaseSignature(role, status_of(role) if found else None)
    return out

"""The server's side of the image repository: it checks what makers publish and keeps the
online roles (snapshot, timestamp) fresh with the only keys it holds.

A compromised server can re-sign snapshot and timestamp, but cannot change targets (the maker's
threshold of offline keys signs those) nor root; devices therefore never install a target the
maker did not sign, and cannot be rolled back (TUF's version rules), only denied updates.

Delegated targets roles (``delegation.py``) are checked against their delegator's keys and
threshold and paths; snapshot lists every targets file, top-level and delegated.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from otaguard.errors import ConflictError, RepositoryError, VerificationError
from otaguard.repo import delegation
from otaguard.repo.roles import ROOT, SNAPSHOT, TARGETS, TIMESTAMP, expiry_for, utcnow

TIMESTAMP_RESIGN_MARGIN = dt.timedelta(hours=6)
SNAPSHOT_RESIGN_MARGIN = dt.timedelta(days=2)


class MetadataStore(Protocol):
    """Where published metadata files live (a directory, a database table...)."""

    def get(self, name: str) -> bytes | None: ...

    def put(self, name: str, data: bytes, *, replace: bool = False) -> None:
        """Store ``name``; without ``replace`` an existing name raises ``ConflictError``."""
        ...


@dataclass(frozen=True)
class PublishResult:
    targets_version: int
    snapshot_version: int
    timestamp_version: int
    added: tuple[str, ...]
    #: every targets role this publication stored, with its new version
    roles: dict[str, int] = field(default_factory=dict)


def _load(data: bytes, what: str) -> Metadata[Root] | Metadata[Targets]:
    try:
        return Metadata.from_bytes(data)
    except DeserializationError as exc:
        raise RepositoryError(f"{what} is not valid TUF metadata: {exc}") from exc


class OnlineRepository:
    """Checks and stores maker metadata; signs snapshot and timestamp."""

    def __init__(self, store: MetadataStore, snapshot_signer: Signer, timestamp_signer: Signer):
        self.store = store
        self.snapshot_signer = snapshot_signer
        self.timestamp_signer = timestamp_signer
        self._lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------------
    def root(self) -> Metadata[Root] | None:
        data = self.store.get("root.json")
        return None if data is None else Metadata[Root].from_bytes(data)

    def _require_root(self) -> Metadata[Root]:
        root = self.root()
        if root is None:
            raise RepositoryError("no root metadata has been published yet")
        return root

    def timestamp(self) -> Metadata[Timestamp] | None:
        data = self.store.get("timestamp.json")
        return None if data is None else Metadata[Timestamp].from_bytes(data)

    def snapshot(self) -> Metadata[Snapshot] | None:
        ts = self.timestamp()
        if ts is None:
            return None
        data = self.store.get(f"{ts.signed.snapshot_meta.version}.snapshot.json")
        return None if data is None else Metadata[Snapshot].from_bytes(data)

    def targets(self) -> Metadata[Targets] | None:
        return self.role_targets(TARGETS)

    def role_targets(
        self, role: str, snapshot: Metadata[Snapshot] | None = None
    ) -> Metadata[Targets] | None:
        """The published (snapshot-listed) version of targets role ``role``, if any."""
        snap = snapshot or self.snapshot()
        meta = None if snap is None else snap.signed.meta.get(f"{role}.json")
        if meta is None:
            return None
        data = self.store.get(f"{meta.version}.{role}.json")
        return None if data is None else Metadata[Targets].from_bytes(data)

    def _loader(self) -> delegation.Loader:
        snap = self.snapshot()
        return lambda role: self.role_targets(role, snap) if snap is not None else None

    def find_target(self, name: str) -> TargetFile | None:
        """The target a TUF client would find for ``name``, delegations included."""
        found = delegation.resolve_target(self._loader(), name)
        return None if found is None else found[1]

    # -- maker publishes --------------------------------------------------------------------
    def install_root(self, data: bytes) -> int:
        """Accept root version N+1 only if signed by a threshold of version N's and its own
        root keys (TUF root rotation rules); re-installing the current version is a no-op."""
        new = _load(data, "root")
        if not isinstance(new.signed, Root):
            raise RepositoryError("expected root metadata")
        with self._lock:
            current = self.root()
            if current is not None:
                if new.signed.version <= current.signed.version:
                    if self.store.get(f"{new.signed.version}.root.json") == data:
                        return new.signed.version
                    raise ConflictError(
                        f"root v{new.signed.version} is not newer than v{current.signed.version}"
                    )
                if new.signed.version != current.signed.version + 1:
                    raise RepositoryError(
                        f"root v{new.signed.version} skips versions after v{current.signed.version}"
                    )
                self._verify(current, ROOT, new, "root (by the previous root's keys)")
            self._verify(new, ROOT, new, "root (by its own keys)")
            if new.signed.is_expired():
                raise RepositoryError("root metadata is expired")
            self.store.put(f"{new.signed.version}.root.json", data)
            self.store.put("root.json", data, replace=True)
            snap = self.snapshot() if current is not None else None
            if snap is not None:
                # A new root may name new online keys: sign fresh snapshot and timestamp now
                # (with the keys this server holds) rather than at their next expiry.
                self._resnapshot({})
            return new.signed.version

    def publish_targets(self, data: bytes) -> PublishResult:
        """Accept new targets metadata signed by the root-named threshold, then re-snapshot."""
        return self.publish({TARGETS: data})

    def publish(self, roles: Mapping[str, bytes]) -> PublishResult:
        """Accept new versions of targets roles (top-level ``targets`` and/or delegated roles)
        together, then sign one new snapshot listing them all.

        Each role must be signed by the threshold of keys its delegator names (root for
        ``targets``; a role in the same batch counts as the delegator's new version), hold only
        targets inside the delegated paths, be newer than the published version, not expired,
        and keep every published target of that role unchanged. Nothing is stored unless every
        role passes. (The server's own checks, artifacts uploaded and release information, are
        ``repo/publish.py``'s, run before this.)

        Raises:
            RepositoryError: nothing to publish, unreadable or non-targets metadata, a role
                name that is bad or not delegated, expired metadata, a changed published
                target.
            VerificationError: a role not signed by the threshold of its delegator's keys, or
                naming a target outside the paths delegated to it.
            ConflictError: a role version not newer than the published one, or already stored.
        """
        if not roles:
            raise RepositoryError("nothing to publish")
        parsed: dict[str, Metadata[Targets]] = {}
        for role, data in roles.items():
            if role != TARGETS:
                delegation.check_role_name(role)
            md = _load(data, role)
            if not isinstance(md.signed, Targets):
                raise RepositoryError(f"{role}: expected targets metadata")
            parsed[role] = md
        with self._lock:
            root = self._require_root()
            snap = self.snapshot()
            unchanged = {r for r in parsed if self._is_published(r, roles[r], snap)}
            if unchanged == set(parsed):
                # Re-publishing what is live (e.g. after a root-only rotation): nothing to do.
                assert snap is not None
                return self._unchanged_result(snap)
            parsed = {r: md for r, md in parsed.items() if r not in unchanged}

            def load(role: str) -> Metadata[Targets] | None:
                if role in parsed:
                    return parsed[role]
                return None if snap is None else self.role_targets(role, snap)

            chains = {
                role: [] if role == TARGETS else delegation.delegation_chain(load, role)
                for role in parsed
            }
            added: set[str] = set()
            for role in sorted(parsed, key=lambda r: len(chains[r])):  # delegators first
                added |= self._check_role(root, role, parsed[role], chains[role], snap)
            versions = {role: md.signed.version for role, md in parsed.items()}
            for role, version in versions.items():
                if self.store.get(f"{version}.{role}.json") is not None:
                    raise ConflictError(f"{role} v{version} is already stored")
            for role in parsed:
                self.store.put(f"{versions[role]}.{role}.json", roles[role])
            snap_v, ts_v = self._resnapshot(versions)
            current = self.targets()
            return PublishResult(
                targets_version=0 if current is None else current.signed.version,
                snapshot_version=snap_v,
                timestamp_version=ts_v,
                added=tuple(sorted(added)),
                roles=versions,
            )

    def _is_published(self, role: str, data: bytes, snap: Metadata[Snapshot] | None) -> bool:
        meta = None if snap is None else snap.signed.meta.get(f"{role}.json")
        return meta is not None and self.store.get(f"{meta.version}.{role}.json") == data

    def _unchanged_result(self, snap: Metadata[Snapshot]) -> PublishResult:
        ts = self.timestamp()
        assert ts is not None
        current = snap.signed.meta.get("targets.json")
        return PublishResult(
            0 if current is None else current.version, snap.signed.version, ts.signed.version, ()
        )

    def _check_role(
        self,
        root: Metadata[Root],
        role: str,
        new: Metadata[Targets],
        chain: list[delegation.Edge],
        snap: Metadata[Snapshot] | None,
    ) -> set[str]:
        """Check one role for ``publish``; return the names of the targets it adds."""
        if role == TARGETS:
            self._verify(root, TARGETS, new, "targets")
        else:
            self._verify(chain[-1].metadata, role, new, f"{role} (by {chain[-1].delegator})")
            delegation.check_delegated_paths(chain, new.signed.targets)
        if new.signed.is_expired():
            raise RepositoryError(f"{role} metadata is expired")
        current = None if snap is None else self.role_targets(role, snap)
        if current is None:
            return set(new.signed.targets)
        if new.signed.version <= current.signed.version:
            raise ConflictError(
                f"{role} v{new.signed.version} is not newer than v{current.signed.version}"
            )
        for name, old in current.signed.targets.items():
            if name in new.signed.targets and new.signed.targets[name] != old:
                raise RepositoryError(f"target {name} changed content; releases are immutable")
        return set(new.signed.targets) - set(current.signed.targets)

    # -- online roles -----------------------------------------------------------------------
    def _resnapshot(
        self, updates: Mapping[str, int], now: dt.datetime | None = None
    ) -> tuple[int, int]:
        """Sign a new snapshot: the current one's entries with ``updates`` (role -> version)."""
        snap = self.snapshot()
        version = 1 if snap is None else snap.signed.version + 1
        snapshot = Snapshot(version=version, expires=expiry_for(SNAPSHOT, now))
        meta = {} if snap is None else dict(snap.signed.meta)
        meta.update({f"{role}.json": MetaFile(version=v) for role, v in updates.items()})
        snapshot.meta = meta
        md = Metadata(snapshot)
        md.sign(self.snapshot_signer)
        self.store.put(f"{version}.snapshot.json", md.to_bytes())
        return version, self._retimestamp(version, now)

    def _retimestamp(self, snapshot_version: int, now: dt.datetime | None = None) -> int:
        ts = self.timestamp()
        version = 1 if ts is None else ts.signed.version + 1
        timestamp = Timestamp(
            version=version,
            expires=expiry_for(TIMESTAMP, now),
            snapshot_meta=MetaFile(version=snapshot_version),
        )
        md = Metadata(timestamp)
        md.sign(self.timestamp_signer)
        self.store.put("timestamp.json", md.to_bytes(), replace=True)
        return version

    def refresh_online_roles(self, now: dt.datetime | None = None) -> bool:
        """Re-sign snapshot / timestamp that are close to expiry, as of ``now``; the new ones
        expire their usual lifetime after ``now``. Returns True if it did."""
        now = now or utcnow()
        with self._lock:
            ts = self.timestamp()
            snap = self.snapshot()
            if ts is None or snap is None:
                return False
            if snap.signed.expires - now < SNAPSHOT_RESIGN_MARGIN:
                self._resnapshot({}, now)
                return True
            if ts.signed.expires - now < TIMESTAMP_RESIGN_MARGIN:
                self._retimestamp(snap.signed.version, now)
                return True
            return False

    @staticmethod
    def _verify(
        delegator: Metadata[Root] | Metadata[Targets],
        role: str,
        md: Metadata[Root] | Metadata[Targets],
        what: str,
    ) -> None:
        try:
            delegator.verify_delegate(role, md)
        except ValueError as exc:
            raise VerificationError(f"{what}: not delegated ({exc})") from exc
        except UnsignedMetadataError as exc:
            raise VerificationError(f"{what}: signature threshold not met ({exc})") from exc

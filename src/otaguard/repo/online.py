"""The server's side of the image repository: it checks what makers publish and keeps the
online roles (snapshot, timestamp) fresh with the only keys it holds.

A compromised server can re-sign snapshot and timestamp, but cannot change targets (the maker's
threshold of offline keys signs those) nor root; devices therefore never install a target the
maker did not sign, and cannot be rolled back (TUF's version rules), only denied updates.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Protocol

from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from otaguard.errors import ConflictError, RepositoryError, VerificationError
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
        snap = self.snapshot()
        if snap is None:
            return None
        data = self.store.get(f"{snap.signed.meta['targets.json'].version}.targets.json")
        return None if data is None else Metadata[Targets].from_bytes(data)

    def find_target(self, name: str) -> TargetFile | None:
        md = self.targets()
        return None if md is None else md.signed.targets.get(name)

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
                self._resnapshot(snap.signed.meta["targets.json"].version)
            return new.signed.version

    def publish_targets(self, data: bytes) -> PublishResult:
        """Accept new targets metadata signed by the root-named threshold, then re-snapshot."""
        new = _load(data, "targets")
        if not isinstance(new.signed, Targets):
            raise RepositoryError("expected targets metadata")
        with self._lock:
            root = self._require_root()
            self._verify(root, TARGETS, new, "targets")
            if new.signed.is_expired():
                raise RepositoryError("targets metadata is expired")
            current = self.targets()
            old_names: set[str] = set()
            if current is not None:
                if (
                    current.signed.version == new.signed.version
                    and self.store.get(f"{new.signed.version}.targets.json") == data
                ):
                    # Re-publishing the current targets (e.g. after a root-only rotation).
                    snap, ts = self.snapshot(), self.timestamp()
                    assert snap is not None
                    assert ts is not None
                    return PublishResult(
                        new.signed.version, snap.signed.version, ts.signed.version, ()
                    )
                if new.signed.version <= current.signed.version:
                    raise ConflictError(
                        f"targets v{new.signed.version} is not newer than v{current.signed.version}"
                    )
                old_names = set(current.signed.targets)
                for name, old in current.signed.targets.items():
                    if name in new.signed.targets and new.signed.targets[name] != old:
                        raise RepositoryError(
                            f"target {name} changed content; releases are immutable"
                        )
            self.store.put(f"{new.signed.version}.targets.json", data)
            snap_v, ts_v = self._resnapshot(new.signed.version)
            added = tuple(sorted(set(new.signed.targets) - old_names))
            return PublishResult(new.signed.version, snap_v, ts_v, added)

    # -- online roles -----------------------------------------------------------------------
    def _resnapshot(self, targets_version: int, now: dt.datetime | None = None) -> tuple[int, int]:
        snap = self.snapshot()
        version = 1 if snap is None else snap.signed.version + 1
        snapshot = Snapshot(version=version, expires=expiry_for(SNAPSHOT, now))
        snapshot.meta = {"targets.json": MetaFile(version=targets_version)}
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
                self._resnapshot(snap.signed.meta["targets.json"].version, now)
                return True
            if ts.signed.expires - now < TIMESTAMP_RESIGN_MARGIN:
                self._retimestamp(snap.signed.version, now)
                return True
            return False

    @staticmethod
    def _verify(
        delegator: Metadata[Root], role: str, md: Metadata[Root] | Metadata[Targets], what: str
    ) -> None:
        try:
            delegator.verify_delegate(role, md)
        except UnsignedMetadataError as exc:
            raise VerificationError(f"{what}: signature threshold not met ({exc})") from exc

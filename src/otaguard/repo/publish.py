"""What a maker's publication must satisfy on the server beyond TUF's own rules: every target
it names has its artifact uploaded already, with the declared length, and carries valid
release information; once the repository accepted it, each target becomes a release.

TUF's rules (signature threshold of the delegator's keys, versions that only grow, published
targets that never change, delegated paths) are ``OnlineRepository.publish``'s. Here they are
put in front of it with the server's artifact and release stores given as plain objects, so
the whole publication can be checked without HTTP or a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from tuf.api.metadata import Metadata, TargetFile, Targets

from otaguard.errors import RepositoryError
from otaguard.repo.delta_targets import check_role_deltas, is_delta_target
from otaguard.repo.images import ReleaseInfo, sha256_of
from otaguard.repo.online import OnlineRepository, PublishResult


class ArtifactIndex(Protocol):
    """The uploaded artifacts, by sha256 (the server's blob store)."""

    def exists(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int: ...


class ReleaseCatalog(Protocol):
    """Where accepted targets are recorded as releases (the server's store)."""

    def upsert_release(
        self,
        target_name: str,
        *,
        version: str,
        hardware: list[str],
        security_version: int,
        sha256: str,
        length: int,
        custom: dict[str, Any],
    ) -> object: ...


def targets_by_role(roles: Mapping[str, bytes]) -> dict[str, dict[str, TargetFile]]:
    """The targets each targets role of ``roles`` (name -> metadata bytes) lists.

    Raises:
        RepositoryError: a role is not readable targets metadata.
    """
    found: dict[str, dict[str, TargetFile]] = {}
    for role, data in roles.items():
        try:
            md = Metadata[Targets].from_bytes(data)
        except Exception as exc:
            raise RepositoryError(f"{role}: not valid targets metadata: {exc}") from exc
        if not isinstance(md.signed, Targets):
            raise RepositoryError(f"{role}: expected targets metadata")
        found[role] = dict(md.signed.targets)
    return found


def targets_of(roles: Mapping[str, bytes]) -> dict[str, TargetFile]:
    """Every target the targets roles ``roles`` (name -> metadata bytes) list, by name.

    Raises:
        RepositoryError: a role is not readable targets metadata.
    """
    targets: dict[str, TargetFile] = {}
    for listed in targets_by_role(roles).values():
        targets.update(listed)
    return targets


def check_deltas(roles: Mapping[str, bytes]) -> None:
    """Every delta target (``repo/delta_targets.py``) is well formed and rebuilds a full image
    of its own role, which it matches, and is smaller than that image's artifact.

    Raises:
        DeltaMetadataError: (a ``RepositoryError``) the first delta that fails, named.
    """
    for role, listed in targets_by_role(roles).items():
        try:
            check_role_deltas(listed)
        except RepositoryError as exc:
            raise type(exc)(f"{role}: {exc}") from exc


def check_artifacts(targets: Mapping[str, TargetFile], artifacts: ArtifactIndex) -> None:
    """Refuse a publication naming an artifact not uploaded (or of another length), or a
    target without valid release information.

    Raises:
        RepositoryError: the first target that fails, named.
    """
    for name, target in targets.items():
        digest = sha256_of(target)
        if not artifacts.exists(digest) or artifacts.size(digest) != target.length:
            raise RepositoryError(f"artifact for {name} ({digest[:12]}) has not been uploaded")
        if not is_delta_target(target):  # a delta's fields: check_deltas
            ReleaseInfo.of_target(target)


def record_releases(targets: Mapping[str, TargetFile], catalog: ReleaseCatalog) -> None:
    """Record each published full-image target as a release (its version, hardware, security
    version); a delta target is not a release (nothing deploys it: it is offered with one)."""
    for name, target in targets.items():
        if is_delta_target(target):
            continue
        info = ReleaseInfo.of_target(target)
        catalog.upsert_release(
            name,
            version=info.version,
            hardware=list(info.hardware),
            security_version=info.security_version,
            sha256=sha256_of(target),
            length=target.length,
            custom=dict(target.custom),
        )


def publish_release(
    repo: OnlineRepository,
    roles: Mapping[str, bytes],
    *,
    artifacts: ArtifactIndex,
    catalog: ReleaseCatalog,
) -> PublishResult:
    """Publish the targets roles ``roles`` (name -> metadata bytes) under one new snapshot,
    after checking their artifacts, and record their targets as releases. Nothing is
    published unless every check passes.

    Raises:
        RepositoryError: unreadable metadata, an artifact missing or of the wrong length,
            invalid release information, a delta target that does not fit a full image of
            its own role (``DeltaMetadataError``), or any refusal of ``OnlineRepository.publish``
            (a changed published target, expired metadata...).
        VerificationError: a role not signed by the threshold of its delegator's keys, or
            naming a target outside its delegated paths.
        ConflictError: a role version not newer than the published one.
    """
    targets = targets_of(roles)
    check_artifacts(targets, artifacts)
    check_deltas(roles)
    result = repo.publish(roles)
    record_releases(targets, catalog)
    return result

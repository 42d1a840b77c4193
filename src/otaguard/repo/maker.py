"""The maker's side of the image repository: root and targets metadata, signed offline.

The maker holds the root and targets keys (files or HSM) and never gives them to the server.
The server holds only the online snapshot and timestamp keys (see ``online.py``); their public
halves are listed in root so devices know which keys may sign those roles.

Layout of a maker repository directory::

    metadata/1.root.json ... N.root.json   every root version, each once fully signed
    metadata/root.json                     newest root (possibly still collecting signatures)
    metadata/targets.json                  targets (possibly still collecting signatures)
    metadata/<role>.json                   delegated targets roles (see ``delegation.py``)
    staged/<target name>                   images added but not yet published
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key, Signature, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Role, Root, TargetFile, Targets
from tuf.api.serialization.json import JSONSerializer

from otaguard.errors import KeyMaterialError, RepositoryError
from otaguard.repo import delegation
from otaguard.repo.compression import compression_of, measure_decompressed
from otaguard.repo.delta_targets import check_role_deltas, is_delta_target, parse_delta_target
from otaguard.repo.images import ReleaseInfo, check_target_name
from otaguard.repo.roles import (
    ROOT,
    SNAPSHOT,
    TARGETS,
    TIMESTAMP,
    SignatureStatus,
    expiry_for,
    root_statuses,
    signature_status,
)

_PRETTY = JSONSerializer(compact=False)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class MakerRepository:
    """Root and top-level targets metadata of one maker, kept in a directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metadata_dir = path / "metadata"
        self.staged_dir = path / "staged"
        if not (self.metadata_dir / "root.json").exists():
            raise RepositoryError(
                f"{path} is not an OTAGuard repository (run `otaguard repo init`)"
            )

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        path: Path,
        *,
        root_keys: list[Key],
        root_threshold: int,
        targets_keys: list[Key],
        targets_threshold: int,
        snapshot_key: Key,
        timestamp_key: Key,
    ) -> MakerRepository:
        """Create version 1 of root and targets, unsigned; sign them with ``sign``."""
        if (path / "metadata" / "root.json").exists():
            raise RepositoryError(f"{path} already holds a repository")
        for name, keys, threshold in (
            (ROOT, root_keys, root_threshold),
            (TARGETS, targets_keys, targets_threshold),
        ):
            if not 1 <= threshold <= len(keys):
                raise RepositoryError(
                    f"{name} threshold {threshold} must be between 1 and the {len(keys)} keys"
                )
            if len({k.keyid for k in keys}) != len(keys):
                raise RepositoryError(f"{name} keys must be distinct")
        root = Root(expires=expiry_for(ROOT), consistent_snapshot=True)
        root.roles[ROOT] = Role([], root_threshold)
        root.roles[TARGETS] = Role([], targets_threshold)
        for key in root_keys:
            root.add_key(key, ROOT)
        for key in targets_keys:
            root.add_key(key, TARGETS)
        root.add_key(snapshot_key, SNAPSHOT)
        root.add_key(timestamp_key, TIMESTAMP)
        targets = Targets(expires=expiry_for(TARGETS))
        repo_md = path / "metadata"
        repo_md.mkdir(parents=True, exist_ok=True)
        (path / "staged").mkdir(exist_ok=True)
        atomic_write(repo_md / "targets.json", Metadata(targets).to_bytes(_PRETTY))
        atomic_write(repo_md / "root.json", Metadata(root).to_bytes(_PRETTY))
        return cls(path)

    # -- reading ----------------------------------------------------------------------------
    def root(self) -> Metadata[Root]:
        return Metadata[Root].from_file(str(self.metadata_dir / "root.json"))

    def targets(self) -> Metadata[Targets]:
        return Metadata[Targets].from_file(str(self.metadata_dir / "targets.json"))

    def has_role(self, role: str) -> bool:
        return (self.metadata_dir / f"{role}.json").is_file()

    def targets_metadata(self, role: str) -> Metadata[Targets]:
        """Top-level targets or a delegated targets role."""
        if role != TARGETS:
            delegation.check_role_name(role)
            if not self.has_role(role):
                raise RepositoryError(f"no targets role {role!r} in this repository")
        return Metadata[Targets].from_file(str(self.metadata_dir / f"{role}.json"))

    def _load_role(self, role: str) -> Metadata[Targets] | None:
        return self.targets_metadata(role) if self.has_role(role) else None

    def delegated_roles(self) -> list[str]:
        """Delegated targets roles, delegators before the roles they delegate to."""
        return delegation.delegated_roles(self._load_role)

    def all_targets(self) -> dict[str, TargetFile]:
        """Every target of top-level targets and of the delegated roles."""
        found: dict[str, TargetFile] = {}
        for role in (TARGETS, *self.delegated_roles()):
            for name, target in self.targets_metadata(role).signed.targets.items():
                found.setdefault(name, target)
        return found

    def delegator(self, role: str) -> Metadata[Any]:
        """The metadata whose keys judge ``role``: root for top-level roles, else the
        delegating targets role."""
        if role in (ROOT, TARGETS):
            return self.root()
        return delegation.delegation_chain(self._load_role, role)[-1].metadata

    def root_history(self) -> list[Path]:
        """Every finished root version ``1.root.json``..``N.root.json``, in order."""
        versions = sorted(
            int(p.name.split(".", 1)[0])
            for p in self.metadata_dir.glob("*.root.json")
            if p.name.split(".", 1)[0].isdigit()
        )
        return [self.metadata_dir / f"{v}.root.json" for v in versions]

    def previous_root(self) -> Metadata[Root] | None:
        """The root version before the current one (whose keys must also sign a rotation)."""
        version = self.root().signed.version
        if version == 1:
            return None
        return Metadata[Root].from_file(str(self.metadata_dir / f"{version - 1}.root.json"))

    def root_status(self) -> list[SignatureStatus]:
        return root_statuses(self.previous_root(), self.root())

    def status(self) -> list[SignatureStatus]:
        root = self.root()
        delegated = [
            signature_status(self.delegator(r), r, self.targets_metadata(r))
            for r in self.delegated_roles()
        ]
        return [*self.root_status(), signature_status(root, TARGETS, self.targets()), *delegated]

    # -- changing ---------------------------------------------------------------------------
    def add_target(
        self, image: Path, name: str, info: ReleaseInfo, role: str | None = None
    ) -> TargetFile:
        """Stage ``image`` as target ``name`` in ``role`` (by default the role the delegations
        give ``name`` to); that role gets a new version needing new signatures."""
        check_target_name(name)
        if not image.is_file():
            raise RepositoryError(f"image {image} does not exist or is not a file")
        role = role or delegation.responsible_role(self._load_role, name)
        md = self.targets_metadata(role)
        if role != TARGETS:
            chain = delegation.delegation_chain(self._load_role, role)
            delegation.check_delegated_paths(chain, [name])
        if name in md.signed.targets:
            raise RepositoryError(f"target {name} already exists; releases are immutable")
        for existing in md.signed.targets.values():
            if is_delta_target(existing):
                continue
            other = ReleaseInfo.from_custom(existing.custom)
            if other.version == info.version and set(other.hardware) & set(info.hardware):
                raise RepositoryError(
                    f"version {info.version} for {sorted(set(other.hardware) & set(info.hardware))}"
                    f" already released as {existing.path}"
                )
        kind = compression_of(name) or compression_of(image.name)
        if kind is not None and info.compression is None:
            image_sha256, image_length = measure_decompressed(image, kind)
            info = replace(
                info, compression=kind, image_sha256=image_sha256, image_length=image_length
            )
        target = TargetFile.from_file(name, str(image), ["sha256"])
        target.unrecognized_fields["custom"] = info.to_custom()
        staged = self.staged_dir / name
        staged.parent.mkdir(parents=True, exist_ok=True)
        tmp = staged.with_name(f".{staged.name}.tmp")
        shutil.copyfile(image, tmp)
        os.replace(tmp, staged)
        md.signed.targets[name] = target
        self.save_new_version(role, md)
        return target

    def role_of(self, name: str) -> str:
        """The targets role that lists target ``name``."""
        for role in (TARGETS, *self.delegated_roles()):
            if name in self.targets_metadata(role).signed.targets:
                return role
        raise RepositoryError(f"no target {name} in this repository")

    def add_delta_target(self, patch: Path, target: TargetFile) -> str:
        """Stage the patch file ``patch`` as the delta target ``target`` (built by
        ``repo/delta_targets.make_delta_target``) in the role of the full image it rebuilds;
        that role gets a new version needing new signatures. Returns the role."""
        delta = parse_delta_target(target)
        role = self.role_of(delta.target_path)
        if role != TARGETS:
            chain = delegation.delegation_chain(self._load_role, role)
            delegation.check_delegated_paths(chain, [target.path])
        md = self.targets_metadata(role)
        if target.path in md.signed.targets:
            raise RepositoryError(f"target {target.path} already exists; releases are immutable")
        check_role_deltas({**md.signed.targets, target.path: target})
        staged = self.staged_dir / target.path
        staged.parent.mkdir(parents=True, exist_ok=True)
        tmp = staged.with_name(f".{staged.name}.tmp")
        shutil.copyfile(patch, tmp)
        os.replace(tmp, staged)
        md.signed.targets[target.path] = target
        self.save_new_version(role, md)
        return role

    def save_new_version(self, role: str, md: Metadata[Targets], *, fresh: bool = False) -> None:
        """Write ``md`` as the next version of targets role ``role`` (unsigned), or as its
        version 1 if ``fresh``."""
        if not fresh:
            self._bump(md, TARGETS)
        else:
            md.signatures.clear()
        self._write(role, md)

    def sign(self, role: str, signer: Signer) -> SignatureStatus:
        """Add ``signer``'s signature to ``role`` (root or targets); return the threshold status."""
        md = self._signable(role)
        keyid = signer.public_key.keyid
        if keyid not in self.signing_keys(role):
            raise RepositoryError(f"key {keyid[:12]} is not a {role} key of this repository")
        try:
            md.sign(signer, append=True)
        except UnsignedMetadataError as exc:  # the signer failed (token PIN, device...)
            raise KeyMaterialError(f"signing {role} failed: {exc.__cause__ or exc}") from exc
        return self._store_signed(role, md)

    def _signable(self, role: str) -> Metadata[Any]:
        if role == ROOT:
            return self.root()
        if role == TARGETS or (role not in (SNAPSHOT, TIMESTAMP) and self.has_role(role)):
            return self.targets_metadata(role)
        raise RepositoryError(f"the maker signs root and targets roles, not {role!r}")

    def signing_keys(self, role: str) -> dict[str, Key]:
        """Keys whose signatures count for ``role``: root also takes the previous root's keys."""
        if role not in (ROOT, TARGETS, SNAPSHOT, TIMESTAMP):
            return delegation.delegator_role(self.delegator(role), role)[0]
        root = self.root()
        allowed = {k: root.signed.keys[k] for k in root.signed.roles[role].keyids}
        prev = self.previous_root() if role == ROOT else None
        if prev is not None:
            allowed.update({k: prev.signed.keys[k] for k in prev.signed.roles[ROOT].keyids})
        return allowed

    def _store_signed(self, role: str, md: Metadata[Any]) -> SignatureStatus:
        self._write(role, md)
        if role != ROOT:
            return signature_status(self.delegator(role), role, md)
        statuses = self.root_status()
        if all(st.valid for st in statuses):  # final: own threshold and the previous root's
            atomic_write(self.metadata_dir / f"{md.signed.version}.root.json", md.to_bytes(_PRETTY))
        return statuses[0]

    def add_signature(self, role: str, signature: dict[str, Any]) -> SignatureStatus:
        """Import a signature made elsewhere (offline) over the current ``role`` metadata."""
        md = self._signable(role)
        try:
            sig = Signature.from_dict(dict(signature))
        except (KeyError, TypeError, ValueError) as exc:
            raise RepositoryError(f"malformed signature: {exc}") from exc
        key = self.signing_keys(role).get(sig.keyid)
        if key is None:
            raise RepositoryError(f"signature by unknown key {sig.keyid[:12]} for {role}")
        try:
            key.verify_signature(sig, md.signed_bytes)
        except Exception as exc:
            raise RepositoryError(
                f"signature does not verify over {role} v{md.signed.version}"
            ) from exc
        md.signatures[sig.keyid] = sig
        return self._store_signed(role, md)

    def stage_root(self, md: Metadata[Root]) -> None:
        """Make ``md`` the root version now collecting signatures (used by key rotation)."""
        current = self.root()
        if md.signed.version != current.signed.version + 1:
            raise RepositoryError(
                f"new root must be v{current.signed.version + 1}, not v{md.signed.version}"
            )
        md.signatures.clear()
        self._write(ROOT, md)

    def new_targets_version(self) -> int:
        """Start a new targets version (same targets, no signatures), e.g. after its keys
        changed, so the new key set signs it and the server accepts it as newer."""
        md = self.targets()
        self._bump(md, TARGETS)
        self._write(TARGETS, md)
        return int(md.signed.version)

    def _bump(self, md: Metadata[Any], role: str) -> None:
        md.signed.version += 1
        md.signed.expires = expiry_for(role)
        md.signatures.clear()

    def _write(self, role: str, md: Metadata[Any]) -> None:
        atomic_write(self.metadata_dir / f"{role}.json", md.to_bytes(_PRETTY))

    def publish_bundle(self) -> dict[str, Any]:
        """What the server needs: every root version, targets, and the staged images' paths."""
        for st in self.status():
            if not st.valid:
                raise RepositoryError(
                    f"{st.role} v{st.version} has {len(st.signed_by)} of {st.threshold} signatures"
                )
        roles = self.delegated_roles()
        names = self.all_targets()
        return {
            "roots": [p.read_bytes() for p in self.root_history()],
            "targets": (self.metadata_dir / "targets.json").read_bytes(),
            # parents before children, so the server can check each against its delegator
            "delegations": {r: (self.metadata_dir / f"{r}.json").read_bytes() for r in roles},
            "images": {
                name: self.staged_dir / name for name in names if (self.staged_dir / name).exists()
            },
        }


def pretty(md: Metadata[Any]) -> bytes:
    return md.to_bytes(_PRETTY)


def signature_dict(sig: Signature) -> dict[str, Any]:
    return json.loads(json.dumps(sig.to_dict()))  # type: ignore[no-any-return]

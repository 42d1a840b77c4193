"""Key rotation and revocation: a new root version that changes which keys sign a role.

TUF rules (spec 5.3.4): root version N+1 is trusted by a client only if it is signed by a
threshold of root N's root keys *and* a threshold of its own root keys. ``MakerRepository``
counts both (``root_status``) and only finalises ``N+1.root.json`` when both are met; this
module builds the unsigned N+1 draft.

Revoking a targets key also starts a new targets version: the metadata signed with the old key
set no longer meets the new root's rules, so the remaining and new targets keys sign it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from securesystemslib.signer import Key
from tuf.api.metadata import Metadata, Root

from otaguard.errors import RepositoryError
from otaguard.repo.maker import MakerRepository
from otaguard.repo.roles import ROOT, TARGETS, TOP_LEVEL_ROLES, expiry_for

MIN_KEYID_PREFIX = 8


@dataclass(frozen=True)
class RoleChange:
    """Keys to add to and remove from one role, and an optional new threshold."""

    add: tuple[Key, ...] = ()
    remove: tuple[str, ...] = ()
    threshold: int | None = None


@dataclass(frozen=True)
class RotationResult:
    root_version: int
    targets_version: int | None  # a new targets version to sign, when its keys changed
    removed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    added: dict[str, tuple[str, ...]] = field(default_factory=dict)


def resolve_keyid(prefix: str, keyids: Sequence[str]) -> str:
    """The one key id in ``keyids`` starting with ``prefix`` (>= 8 hex digits)."""
    prefix = prefix.strip().lower()
    if len(prefix) < MIN_KEYID_PREFIX:
        raise RepositoryError(f"give at least {MIN_KEYID_PREFIX} characters of the key id")
    found = sorted({k for k in keyids if k.startswith(prefix)})
    if not found:
        raise RepositoryError(f"no key {prefix[:16]} in this repository's root")
    if len(found) > 1:
        raise RepositoryError(f"key id prefix {prefix} is ambiguous")
    return found[0]


def require_final_root(repo: MakerRepository) -> Metadata[Root]:
    """The current root, refusing to rotate on top of a root still collecting signatures."""
    root = repo.root()
    if not all(st.valid for st in repo.root_status()):
        raise RepositoryError(
            f"root v{root.signed.version} is still below threshold; "
            "finish signing it before starting another rotation"
        )
    return root


def next_root(current: Metadata[Root], changes: Mapping[str, RoleChange]) -> Metadata[Root]:
    """Root version N+1 with ``changes`` applied, unsigned (pure: touches no files)."""
    new = Metadata[Root].from_bytes(current.to_bytes())
    new.signatures.clear()
    root = new.signed
    if not changes:
        raise RepositoryError("nothing to change")
    for role, change in changes.items():
        if role not in TOP_LEVEL_ROLES:
            raise RepositoryError(f"unknown role {role!r}; roles are {', '.join(TOP_LEVEL_ROLES)}")
        if not (change.add or change.remove or change.threshold is not None):
            raise RepositoryError(f"nothing to change for {role}")
        for keyid in change.remove:
            if keyid not in root.roles[role].keyids:
                raise RepositoryError(f"key {keyid[:12]} is not a {role} key")
            root.revoke_key(keyid, role)
        for key in change.add:
            if key.keyid in root.roles[role].keyids:
                raise RepositoryError(f"key {key.keyid[:12]} is already a {role} key")
            if key.keyid in change.remove:
                raise RepositoryError(f"key {key.keyid[:12]} is both added and removed")
            root.add_key(key, role)
        if change.threshold is not None:
            root.roles[role].threshold = change.threshold
        count, threshold = len(root.roles[role].keyids), root.roles[role].threshold
        if not 1 <= threshold <= count:
            raise RepositoryError(
                f"{role} would have {count} key(s) for a threshold of {threshold}; "
                "add keys (--new-key) or lower the threshold"
            )
    root.version += 1
    root.expires = expiry_for(ROOT)
    return new


def rotate(repo: MakerRepository, changes: Mapping[str, RoleChange]) -> RotationResult:
    """Stage root N+1 with ``changes``; it must then be signed by a threshold of root N's root
    keys and of its own. Targets gets a new version to sign if its keys changed."""
    current = require_final_root(repo)
    new = next_root(current, changes)
    repo.stage_root(new)
    targets_version = None
    if TARGETS in changes and (changes[TARGETS].remove or changes[TARGETS].threshold):
        targets_version = repo.new_targets_version()
    return RotationResult(
        root_version=new.signed.version,
        targets_version=targets_version,
        removed={r: c.remove for r, c in changes.items() if c.remove},
        added={r: tuple(k.keyid for k in c.add) for r, c in changes.items() if c.add},
    )


def rotate_role(
    repo: MakerRepository,
    role: str,
    *,
    add: Sequence[Key] = (),
    remove: Sequence[str] = (),
    threshold: int | None = None,
) -> RotationResult:
    """Change the keys of one role; ``remove`` takes key ids or unique prefixes of them."""
    current = repo.root()
    if role not in current.signed.roles:
        raise RepositoryError(f"unknown role {role!r}; roles are {', '.join(TOP_LEVEL_ROLES)}")
    keyids = current.signed.roles[role].keyids
    full = tuple(resolve_keyid(k, keyids) for k in remove)
    return rotate(repo, {role: RoleChange(tuple(add), full, threshold)})


def revoke(repo: MakerRepository, keyid: str, replacements: Sequence[Key] = ()) -> RotationResult:
    """Remove a (compromised) key from every role that lists it, adding ``replacements`` to
    those roles so their thresholds can still be met."""
    current = repo.root()
    full = resolve_keyid(keyid, list(current.signed.keys))
    roles = [r for r, role in current.signed.roles.items() if full in role.keyids]
    return rotate(repo, {r: RoleChange(tuple(replacements), (full,)) for r in roles})

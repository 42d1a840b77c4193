"""The maker's delegation edits: delegate paths to a new role, spread a role over hashed bins,
sign every delegated role a key may sign. They change a ``MakerRepository`` (files on the
offline workstation); the walking rules they rely on are the pure ones in ``delegation.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, SuccinctRoles, Targets

from otaguard.errors import RepositoryError
from otaguard.repo.delegation import check_role_name, group_into_bins
from otaguard.repo.maker import MakerRepository
from otaguard.repo.roles import TARGETS, SignatureStatus, expiry_for


def _check_keys(keys: Sequence[Key], threshold: int, what: str) -> None:
    if not 1 <= threshold <= len(keys):
        raise RepositoryError(
            f"{what} threshold {threshold} must be between 1 and the {len(keys)} keys"
        )
    if len({k.keyid for k in keys}) != len(keys):
        raise RepositoryError(f"{what} keys must be distinct")


def delegate(
    repo: MakerRepository,
    name: str,
    *,
    keys: Sequence[Key],
    threshold: int,
    paths: Sequence[str],
    parent: str = TARGETS,
    terminating: bool = True,
) -> None:
    """Delegate target ``paths`` (TUF glob patterns such as ``sim-board/*``) to a new role
    ``name`` signed by ``threshold`` of ``keys``. ``parent`` gets a new version to sign and
    ``name`` starts as an empty version 1 to sign."""
    check_role_name(name)
    _check_keys(keys, threshold, name)
    if not paths or any(not p or p.startswith("/") for p in paths):
        raise RepositoryError("a delegation needs relative path patterns, e.g. 'sim-board/*'")
    if repo.has_role(name):
        raise RepositoryError(f"role {name!r} already exists")
    md = repo.targets_metadata(parent)
    dl = md.signed.delegations
    if dl is not None and dl.succinct_roles is not None:
        raise RepositoryError(f"{parent!r} delegates to hashed bins; it cannot also name roles")
    if dl is None:
        dl = md.signed.delegations = Delegations(keys={}, roles={})
    roles = dl.roles if dl.roles is not None else {}
    roles[name] = DelegatedRole(name, [], threshold, terminating, list(paths))
    dl.roles = roles
    for key in keys:
        md.signed.add_key(key, name)
    repo.save_new_version(parent, md)
    repo.save_new_version(name, Metadata(Targets(expires=expiry_for(TARGETS))), fresh=True)


def delegate_hashed_bins(
    repo: MakerRepository,
    parent: str,
    *,
    keys: Sequence[Key],
    threshold: int,
    bit_length: int,
    name_prefix: str | None = None,
) -> list[str]:
    """Spread ``parent``'s future targets over ``2**bit_length`` hashed bins signed by
    ``threshold`` of ``keys``; every bin starts as an empty version 1 to sign. Targets already
    in ``parent`` move into their bins."""
    _check_keys(keys, threshold, "bins")
    prefix = check_role_name(name_prefix or f"{parent}-bins")
    md = repo.targets_metadata(parent)
    if md.signed.delegations is not None:
        raise RepositoryError(f"{parent!r} already delegates; hashed bins need a role of their own")
    try:
        succinct = SuccinctRoles([], threshold, bit_length, prefix)
    except ValueError as exc:
        raise RepositoryError(f"bad hashed-bin delegation: {exc}") from exc
    names = list(succinct.get_roles())
    for bin_name in names:
        check_role_name(bin_name)
        if repo.has_role(bin_name):
            raise RepositoryError(f"role {bin_name!r} already exists")
    md.signed.delegations = Delegations(keys={}, succinct_roles=succinct)
    for key in keys:
        md.signed.add_key(key)
    grouped = group_into_bins(succinct, md.signed.targets.values())
    md.signed.targets = {}
    repo.save_new_version(parent, md)
    for bin_name in names:
        bin_md = Metadata(Targets(expires=expiry_for(TARGETS), targets=grouped[bin_name]))
        repo.save_new_version(bin_name, bin_md, fresh=True)
    return names


def sign_delegated(
    repo: MakerRepository, signer: Signer, roles: Iterable[str] | None = None
) -> list[SignatureStatus]:
    """Sign every delegated role (or those in ``roles``) that names ``signer``'s key and lacks
    its signature; e.g. one pass over all hashed bins of a team."""
    keyid = signer.public_key.keyid
    done: list[SignatureStatus] = []
    for role in roles if roles is not None else repo.delegated_roles():
        if keyid in repo.signing_keys(role) and keyid not in repo.targets_metadata(role).signatures:
            done.append(repo.sign(role, signer))
    return done

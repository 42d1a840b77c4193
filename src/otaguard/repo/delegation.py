"""Delegated targets roles: one role per product line or hardware family with its own keys and
threshold, and hashed bins (TUF's succinct delegations, TAP 15) for large catalogues.

The tree is plain TUF: top-level ``targets`` (the maker's offline keys) delegates, say,
``sim-board/*`` to the role ``sim-board`` whose keys only the sim-board team holds; that role
may in turn spread its targets over ``2**bit_length`` hashed bins ``sim-board-bins-00``...,
so a device fetches one small bin instead of one huge targets file.

The walking logic is pure and works over a *loader* (role name -> that role's current
``Metadata[Targets]`` or ``None``), so the maker (files on disk) and the server (published
metadata) walk the tree exactly as ``tuf.ngclient`` does. The maker-side operations at the end
that edit a ``MakerRepository`` live in ``maker_delegation.py``, so this module
imports nothing of the maker.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from securesystemslib.signer import Key
from tuf.api.metadata import (
    Delegations,
    Metadata,
    SuccinctRoles,
    TargetFile,
    Targets,
)

from otaguard.errors import RepositoryError, VerificationError
from otaguard.repo.roles import TARGETS, TOP_LEVEL_ROLES

Loader = Callable[[str], Metadata[Targets] | None]

#: the most roles a walk visits, as ``tuf.ngclient.UpdaterConfig.max_delegations``
MAX_DELEGATIONS = 32
#: the most roles a search for a delegator looks at (bins are not expanded)
MAX_TREE_ROLES = 10_000
_ROLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_role_name(name: str) -> str:
    """A delegated role name usable as a file name (``<version>.<name>.json``) and in URLs."""
    if name in TOP_LEVEL_ROLES or not _ROLE_NAME.match(name) or ".." in name:
        raise RepositoryError(
            f"invalid delegated role name {name!r}: 1..64 letters, digits, '.', '_', '-', "
            "not a top-level role name"
        )
    return name


@dataclass(frozen=True)
class Edge:
    """``delegator`` (whose current metadata is ``metadata``) delegates to ``role``."""

    delegator: str
    metadata: Metadata[Targets]
    role: str


def direct_children(md: Targets) -> Iterator[str]:
    """Names of the roles ``md`` delegates to (every bin, for succinct delegations)."""
    dl = md.delegations
    if dl is None:
        return
    if dl.roles is not None:
        yield from dl.roles
    elif dl.succinct_roles is not None:
        yield from dl.succinct_roles.get_roles()


def delegation_chain(load: Loader, role: str) -> list[Edge]:
    """The edges from top-level targets down to ``role`` (breadth first, so the shortest).

    Raises ``RepositoryError`` if no role reachable from targets delegates ``role``. Bins are
    leaves here: a bin's own delegations are not followed.
    """
    queue: deque[tuple[str, list[Edge]]] = deque([(TARGETS, [])])
    seen = {TARGETS}
    while queue and len(seen) <= MAX_TREE_ROLES:
        name, path = queue.popleft()
        md = load(name)
        if md is None or md.signed.delegations is None:
            continue
        dl = md.signed.delegations
        if dl.succinct_roles is not None:
            if dl.succinct_roles.is_delegated_role(role):
                return [*path, Edge(name, md, role)]
            continue
        for child in dl.roles or {}:
            edge = Edge(name, md, child)
            if child == role:
                return [*path, edge]
            if child not in seen:
                seen.add(child)
                queue.append((child, [*path, edge]))
    raise RepositoryError(f"role {role!r} is not delegated by targets or any role below it")


def reaches(delegations: Delegations, path: str, role: str) -> bool:
    """Whether a TUF client looking for ``path`` in the delegator would descend into ``role``:
    ``role`` matches ``path`` and no terminating role listed before it matched first."""
    for name, terminating in delegations.get_roles_for_target(path):
        if name == role:
            return True
        if terminating:
            return False
    return False


def check_delegated_paths(chain: Sequence[Edge], paths: Iterable[str]) -> None:
    """Every target path must be reachable through every edge of ``chain`` (the client would
    otherwise never look for it there): refuse targets outside the delegated paths."""
    for path in paths:
        for edge in chain:
            dl = edge.metadata.signed.delegations
            if dl is None or not reaches(dl, path, edge.role):
                raise VerificationError(
                    f"target {path} is outside the paths {edge.delegator!r} delegates to "
                    f"{edge.role!r}"
                )


def responsible_role(load: Loader, path: str) -> str:
    """The role a new target ``path`` belongs in: the deepest role the client's walk reaches
    first (top-level targets if nothing is delegated for ``path``)."""
    name = TARGETS
    for _ in range(MAX_DELEGATIONS):
        md = load(name)
        if md is None:
            raise RepositoryError(f"role {name!r} is delegated but has no metadata")
        dl = md.signed.delegations
        first = next(iter(dl.get_roles_for_target(path)), None) if dl else None
        if first is None:
            return name
        name = first[0]
    raise RepositoryError(f"delegations for {path} are nested deeper than {MAX_DELEGATIONS}")


def resolve_target(load: Loader, path: str) -> tuple[str, TargetFile] | None:
    """Find ``path`` the way ``tuf.ngclient.Updater`` does (preorder depth-first walk, first
    match wins, terminating roles end the search); returns the role and the target."""
    to_visit: list[str] = [TARGETS]
    visited: set[str] = set()
    while to_visit and len(visited) <= MAX_DELEGATIONS:
        name = to_visit.pop()
        if name in visited:
            continue
        md = load(name)
        if md is None:
            visited.add(name)
            continue
        target = md.signed.targets.get(path)
        if target is not None:
            return name, target
        visited.add(name)
        dl = md.signed.delegations
        if dl is None:
            continue
        children: list[str] = []
        for child, terminating in dl.get_roles_for_target(path):
            children.append(child)
            if terminating:
                to_visit = []
                break
        to_visit.extend(reversed(children))
    return None


def delegated_roles(load: Loader) -> list[str]:
    """Every delegated role reachable from targets whose metadata ``load`` finds, parents
    before children (the order to verify and publish them in)."""
    order: list[str] = []
    queue: deque[str] = deque([TARGETS])
    seen = {TARGETS}
    while queue:
        md = load(queue.popleft())
        if md is None:
            continue
        for child in direct_children(md.signed):
            if child not in seen and len(seen) <= MAX_TREE_ROLES:
                seen.add(child)
                if load(child) is not None:
                    order.append(child)
                    queue.append(child)
    return order


def suggest_bit_length(n_targets: int) -> int:
    """Bins that keep what a device fetches small: snapshot grows with the number of bins
    (~40 bytes each), a bin with the targets in it (~400 bytes each), so about sqrt(10 n)."""
    return max(1, min(16, round(math.log2(max(2.0, math.sqrt(10 * max(1, n_targets)))))))


def bin_of(succinct: SuccinctRoles, path: str) -> str:
    return succinct.get_role_for_target(path)


def group_into_bins(
    succinct: SuccinctRoles, targets: Iterable[TargetFile]
) -> dict[str, dict[str, TargetFile]]:
    """Every bin name (empty ones too) with the targets that hash into it."""
    bins: dict[str, dict[str, TargetFile]] = {name: {} for name in succinct.get_roles()}
    for t in targets:
        bins[succinct.get_role_for_target(t.path)][t.path] = t
    return bins


def delegator_role(md: Metadata[Targets], role: str) -> tuple[dict[str, Key], int]:
    """Keys and threshold ``md`` names for ``role``."""
    try:
        r = md.signed.get_delegated_role(role)
        return {k: md.signed.get_key(k) for k in r.keyids}, r.threshold
    except ValueError as exc:
        raise RepositoryError(f"{role!r} is not delegated: {exc}") from exc

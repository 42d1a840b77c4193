"""Bytes the server served for each device's assignment, per deployment: the fleet's view of
what delta updates save (bytes sent vs. bytes full images would have needed).

Why a module of its own: target downloads are the server's heaviest traffic, so the download
route only adds to an in-memory tally (``server/transfers.py``); this module turns a tally
into database rows now and then, in one transaction (two queries and one executemany).
``attribute`` is the pure decision: which served bytes count, for which deployment target.
A served download counts only for a device whose identity was proven on the request (client
certificate) or whose bearer credential, hashed, matches the stored hash; and only for the
device's newest deployment of the image the file is (the image itself, or a delta of it).
"""

from __future__ import annotations

import hmac
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from otaguard.store.engine import Database
from otaguard.store.models import Deployment, DeploymentTarget, Device, Release


@dataclass(frozen=True)
class Served:
    """Bytes of one target file served to one device (as the request identified it)."""

    device_id: str
    #: the sha256 of the bearer credential the request carried; None: a verified certificate
    credential_hash: str | None
    target_name: str
    sha256: str
    nbytes: int


_Key = tuple[str, str | None, str, str]


class TransferTally:
    """Served bytes by (device, credential hash, target name, sha256), in memory until taken
    (the download route adds, a background task records: ``server/transfers.py``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes: defaultdict[_Key, int] = defaultdict(int)

    def add(self, key: _Key, nbytes: int) -> None:
        with self._lock:
            self._bytes[key] += nbytes

    def take(self) -> list[Served]:
        with self._lock:
            taken, self._bytes = self._bytes, defaultdict(int)
        return [Served(*key, nbytes) for key, nbytes in taken.items()]

    def restore(self, served: Iterable[Served]) -> None:
        """Put back what ``take`` returned (its recording failed)."""
        for s in served:
            self.add((s.device_id, s.credential_hash, s.target_name, s.sha256), s.nbytes)


#: ``resolve(target name, sha256)``: the full image the file is (itself or the image a delta
#: of it rebuilds) and whether it is a delta; None when the name is no target with that hash
Resolver = Callable[[str, str], tuple[str, bool] | None]


@dataclass(frozen=True)
class TransferSummary:
    """A deployment's fleet bytes view."""

    bytes_sent: int = 0  # all bytes served for its devices' assignments
    delta_bytes: int = 0  # of which, a delta's
    devices_served: int = 0  # devices that downloaded anything for it
    devices_delta: int = 0  # devices that downloaded a delta for it
    full_bytes: int = 0  # what full images would have needed: devices_served x artifact length

    @property
    def saved_bytes(self) -> int:
        return self.full_bytes - self.bytes_sent


def attribute(
    served: Iterable[Served],
    credentials: Mapping[str, str],
    memberships: Mapping[str, Sequence[tuple[int, str]]],
    resolve: Resolver,
) -> dict[tuple[int, str], tuple[int, int]]:
    """Per (deployment, device): (bytes, delta bytes) to add. ``credentials``: each known
    device's stored credential hash; ``memberships``: per device, (deployment id, its target
    name), newest deployment first. Bytes of an unknown device, a wrong credential, a file
    that is no target, or an image none of the device's deployments sends are not counted."""
    added: dict[tuple[int, str], tuple[int, int]] = {}
    for item in served:
        stored = credentials.get(item.device_id)
        if stored is None or item.nbytes <= 0:
            continue
        if item.credential_hash is not None and not hmac.compare_digest(
            stored, item.credential_hash
        ):
            continue
        image = resolve(item.target_name, item.sha256)
        if image is None:
            continue
        full_name, is_delta = image
        deployment = next(
            (d for d, name in memberships.get(item.device_id, ()) if name == full_name), None
        )
        if deployment is None:
            continue
        key = (deployment, item.device_id)
        total, delta = added.get(key, (0, 0))
        added[key] = (total + item.nbytes, delta + (item.nbytes if is_delta else 0))
    return added


_DEVICES = cast(Table, Device.__table__)
_TARGETS = cast(Table, DeploymentTarget.__table__)
_DEPLOYMENTS = cast(Table, Deployment.__table__)
_RELEASES = cast(Table, Release.__table__)
_CREDENTIALS = select(_DEVICES.c.id, _DEVICES.c.credential_hash).where(
    _DEVICES.c.id.in_(bindparam("ids", expanding=True))
)
_MEMBERSHIPS = (
    select(_TARGETS.c.device_id, _DEPLOYMENTS.c.id, _DEPLOYMENTS.c.target_name)
    .join(_DEPLOYMENTS, _DEPLOYMENTS.c.id == _TARGETS.c.deployment_id)
    .where(_TARGETS.c.device_id.in_(bindparam("ids", expanding=True)))
    .order_by(_DEPLOYMENTS.c.id.desc())
)
_ADD_BYTES = (
    update(_TARGETS)
    .where(
        _TARGETS.c.deployment_id == bindparam("b_dep"),
        _TARGETS.c.device_id == bindparam("b_dev"),
    )
    .values(
        bytes_sent=_TARGETS.c.bytes_sent + bindparam("b_bytes"),
        delta_bytes=_TARGETS.c.delta_bytes + bindparam("b_delta"),
    )
)


class Transfers:
    """The served-bytes rows of one ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, served: Sequence[Served], resolve: Resolver) -> set[int]:
        """Add ``served`` to the deployment targets it counts for (``attribute``); returns
        the deployments that changed."""
        if not served:
            return set()
        ids = sorted({s.device_id for s in served})
        with self.db.session() as s:
            conn = s.connection()
            credentials = {
                r.id: r.credential_hash for r in conn.execute(_CREDENTIALS, {"ids": ids})
            }
            memberships: dict[str, list[tuple[int, str]]] = {}
            for row in conn.execute(_MEMBERSHIPS, {"ids": ids}):
                memberships.setdefault(row.device_id, []).append((row.id, row.target_name))
            added = attribute(served, credentials, memberships, resolve)
            if added:
                conn.execute(
                    _ADD_BYTES,
                    [
                        {"b_dep": dep, "b_dev": dev, "b_bytes": total, "b_delta": delta}
                        for (dep, dev), (total, delta) in sorted(added.items())
                    ],
                )
        return {dep for dep, _dev in added}

    def summaries(self, deployment_ids: Iterable[int]) -> dict[int, TransferSummary]:
        """The fleet bytes view of each deployment in ``deployment_ids``."""
        with self.db.session() as s:
            return summaries_in(s, deployment_ids)


def summaries_in(s: Session, deployment_ids: Iterable[int]) -> dict[int, TransferSummary]:
    """``Transfers.summaries`` inside the caller's session (one query)."""
    ids = sorted(set(deployment_ids))
    if not ids:
        return {}
    query = (
        select(
            _TARGETS.c.deployment_id,
            func.coalesce(func.sum(_TARGETS.c.bytes_sent), 0),
            func.coalesce(func.sum(_TARGETS.c.delta_bytes), 0),
            func.count().filter(_TARGETS.c.bytes_sent > 0),
            func.count().filter(_TARGETS.c.delta_bytes > 0),
            func.max(_RELEASES.c.length),
        )
        .join(_DEPLOYMENTS, _DEPLOYMENTS.c.id == _TARGETS.c.deployment_id)
        .join(_RELEASES, _RELEASES.c.target_name == _DEPLOYMENTS.c.target_name)
        .where(_TARGETS.c.deployment_id.in_(ids))
        .group_by(_TARGETS.c.deployment_id)
    )
    found: dict[int, TransferSummary] = {}
    for dep, sent, delta, served, deltas, length in s.execute(query):
        found[int(dep)] = TransferSummary(
            bytes_sent=int(sent),
            delta_bytes=int(delta),
            devices_served=int(served),
            devices_delta=int(deltas),
            full_bytes=int(served) * int(length or 0),
        )
    return found


def summary_fields(summary: TransferSummary) -> dict[str, Any]:
    """The view's fields, as the API shows them."""
    return {
        "bytes_sent": summary.bytes_sent,
        "delta_bytes": summary.delta_bytes,
        "full_bytes": summary.full_bytes,
        "saved_bytes": summary.saved_bytes,
        "devices_served": summary.devices_served,
        "devices_delta": summary.devices_delta,
    }

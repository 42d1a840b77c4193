"""What the anomaly scan reads from the database: one window's fleet signals
(``fleet.anomaly.FleetSignals``), gathered by a few aggregate queries off the check-in path.

Failure segments come from targets that reached an outcome in the window (per hardware type and
per release); verification failures from devices' refusal reports; unknown firmware from what
devices that checked in during the window run, against the published releases; downgrade
attempts and refused replays from the check-in batches themselves (``CheckIns.observed``: the
batch already holds the device's previous security version and manifest time, so noting them
costs no query); failed authentications per address and downloads per device from the server's
in-memory tallies (``fleet/tally.py``, ``fleet/traffic.py``): here the download claims are
checked against the stored credential digests and each device's assigned bytes are looked up,
two queries per scan for the devices that downloaded.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from otaguard.fleet import traffic
from otaguard.fleet.anomaly import DownloadUsage, FleetSignals, SegmentOutcomes
from otaguard.fleet.integrity import ManifestObservation, RunningFirmware, VerificationReport
from otaguard.fleet.status import TargetStatus, UpdateEvent
from otaguard.fleet.tally import Bucket
from otaguard.store.engine import Database
from otaguard.store.models import Deployment, DeploymentTarget, Device, Release, StatusEvent

#: error codes of refusals that mean signed data did not verify (``errors.VerificationError``)
VERIFICATION_CODES = frozenset({"verification", "assignment", "manifest"})
_FINAL = (TargetStatus.SUCCEEDED.value, TargetStatus.FAILED.value)
MAX_ROWS = 100_000
_CHUNK = 500  # ids per IN (...) list
_OPEN = (TargetStatus.PENDING.value, TargetStatus.IN_PROGRESS.value)


def gather(
    db: Database,
    since: dt.datetime,
    *,
    downgrades: Sequence[ManifestObservation] = (),
    factory_versions: Collection[str] = (),
    auth_buckets: Sequence[Bucket] = (),
    download_buckets: Sequence[Bucket] = (),
) -> FleetSignals:
    """The fleet's signals from ``since`` to now (the tallies' buckets: already read for
    that window)."""
    with db.session(write=False) as s:
        t, d = DeploymentTarget, Device
        outcomes = s.execute(
            select(d.hardware, Deployment.target_name, t.status, func.count())
            .join(d, d.id == t.device_id)
            .join(Deployment, Deployment.id == t.deployment_id)
            .where(t.updated_at >= since, t.status.in_(_FINAL))
            .group_by(d.hardware, Deployment.target_name, t.status)
        ).all()
        refusals = s.execute(
            select(StatusEvent.device_id, StatusEvent.detail)
            .where(
                StatusEvent.created_at >= since,
                StatusEvent.event.in_([UpdateEvent.REFUSED.value, UpdateEvent.FAILED.value]),
            )
            .limit(MAX_ROWS)
        ).all()
        running = s.execute(
            select(d.id, d.hardware, d.current_version)
            .where(d.last_seen >= since, d.current_version.is_not(None))
            .limit(MAX_ROWS)
        ).all()
        published: dict[str, set[str]] = defaultdict(set)
        for version, hardware in s.execute(select(Release.version, Release.hardware)):
            published[version].update(hardware or [])
        downloads = _downloads(s, since, download_buckets)
    segments, attempts, failures = _segments([tuple(r) for r in outcomes])  # type: ignore[misc]
    verification = [
        VerificationReport(device_id, str(detail.get("code")), str(detail.get("error", ""))[:200])
        for device_id, detail in refusals
        if isinstance(detail, dict) and detail.get("code") in VERIFICATION_CODES
    ]
    return FleetSignals(
        segments=segments,
        fleet_attempts=attempts,
        fleet_failures=failures,
        verification=verification,
        manifests=list(downgrades),
        running=[RunningFirmware(i, hw, v) for i, hw, v in running if v is not None],
        published=published,
        factory_versions=factory_versions,
        auth_failures=traffic.auth_failures(auth_buckets),
        downloads=downloads,
    )


def _chunks(ids: Collection[str]) -> list[list[str]]:
    ordered = sorted(ids)
    return [ordered[i : i + _CHUNK] for i in range(0, len(ordered), _CHUNK)]


def _downloads(s: Session, since: dt.datetime, buckets: Sequence[Bucket]) -> list[DownloadUsage]:
    """Per downloader its usage: bearer claims checked against the stored digests, and each
    proven device's assigned bytes (its targets still open or changed in the window)."""
    if not buckets:
        return []
    digests: dict[str, str] = {}
    for ids in _chunks(traffic.bearer_claims(buckets)):
        rows = s.execute(select(Device.id, Device.credential_hash).where(Device.id.in_(ids)))
        digests.update({str(i): str(h) for i, h in rows})
    devices = {b.key[1] for b in buckets if traffic.proven(b.key, digests)}
    expected: dict[str, int] = {}
    t = DeploymentTarget
    for ids in _chunks(devices):
        rows = s.execute(
            select(t.device_id, func.sum(Release.length))
            .join(Deployment, Deployment.id == t.deployment_id)
            .join(Release, Release.target_name == Deployment.target_name)
            .where(t.device_id.in_(ids), or_(t.updated_at >= since, t.status.in_(_OPEN)))
            .group_by(t.device_id)
        )
        expected.update({i: int(n or 0) for i, n in rows})
    return traffic.download_usage(buckets, digests, expected)


def _segments(
    rows: Sequence[tuple[str, str, str, int]],
) -> tuple[list[SegmentOutcomes], int, int]:
    per: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    attempts = failures = 0
    for hardware, target_name, status, n in rows:
        count = int(n)
        failed = count if status == TargetStatus.FAILED.value else 0
        attempts += count
        failures += failed
        for key in (("hardware", hardware), ("release", target_name)):
            per[key][0] += count
            per[key][1] += failed
    segments = [SegmentOutcomes(dim, value, a, f) for (dim, value), (a, f) in sorted(per.items())]
    return segments, attempts, failures

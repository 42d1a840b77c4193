"""Anomaly rules over the fleet's update signals: each one an explained alert with evidence.

An operator of 100,000 devices cannot read every report. These rules turn what the server
already sees into a few alerts that say what is wrong, about whom, and the figures behind it:

- ``failure_spikes``: one hardware type, version, region or tag fails far more than the rest of
  the fleet (Newcombe's bound on the difference, ``fleet/stats.py``, so a small segment with a
  couple of failures is not a spike);
- the integrity rules of ``fleet/integrity.py``: verification failures reported by devices,
  downgrade and replay attempts, firmware the repository never published;
- ``auth_failure_bursts``: many failed authentications from one source address in a window;
- ``download_volume``: a device downloaded far more than its update (and the fleet's median)
  explains: a retry loop, a scraper on a stolen credential, or a broken resume.

A clean fleet raises none of them; the tests check that as carefully as each detection. Pure:
plain values in (the server gathers them from its tables for the window it scans), alerts out.
The server stores, deduplicates by ``Alert.key``, counts and pushes them.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from otaguard.errors import PolicyError
from otaguard.fleet.alerts import Alert, AlertKind, EvidenceValue, Severity
from otaguard.fleet.integrity import (
    ManifestObservation,
    RunningFirmware,
    VerificationReport,
    manifest_anomalies,
    unknown_firmware,
    verification_failures,
)
from otaguard.fleet.stats import newcombe_difference, z_one_sided

# --- failure spikes -----------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentOutcomes:
    """Update outcomes of the devices with ``dimension`` = ``value`` (e.g. hardware = "b2")."""

    dimension: str
    value: str
    attempts: int
    failures: int


@dataclass(frozen=True)
class SpikePolicy:
    """A segment spikes when its failure rate exceeds the rest of the fleet's by more than
    ``margin`` (Newcombe's lower bound, ``alpha`` split over the segments tested) and is at
    least ``ratio`` times it; ``critical_rate`` and above is critical."""

    min_attempts: int = 20
    margin: float = 0.05
    ratio: float = 3.0
    alpha: float = 0.001
    critical_rate: float = 0.5


def failure_spikes(
    segments: Sequence[SegmentOutcomes],
    fleet_attempts: int,
    fleet_failures: int,
    policy: SpikePolicy = SpikePolicy(),
) -> list[Alert]:
    """Segments that fail far more than the rest of the fleet."""
    tested = [s for s in segments if s.attempts >= policy.min_attempts]
    if not tested:
        return []
    z = z_one_sided(policy.alpha / len(tested))
    alerts = []
    for s in tested:
        rest_attempts = fleet_attempts - s.attempts
        rest_failures = fleet_failures - s.failures
        if rest_attempts <= 0 or not 0 <= rest_failures <= rest_attempts:
            continue  # the segment is the whole fleet: no baseline to compare with
        rate, rest_rate = s.failures / s.attempts, rest_failures / rest_attempts
        lower, _ = newcombe_difference(s.failures, s.attempts, rest_failures, rest_attempts, z)
        if lower > policy.margin and rate >= policy.ratio * rest_rate:
            alerts.append(_spike_alert(s, rate, rest_rate, lower, policy))
    return alerts


def _spike_alert(
    s: SegmentOutcomes, rate: float, rest_rate: float, lower: float, policy: SpikePolicy
) -> Alert:
    severity = Severity.CRITICAL if rate >= policy.critical_rate else Severity.WARNING
    message = (
        f"{s.dimension} {s.value}: {s.failures}/{s.attempts} updates failed ({rate:.1%}) "
        f"against {rest_rate:.1%} in the rest of the fleet"
    )
    evidence: dict[str, EvidenceValue] = {
        "dimension": s.dimension,
        "value": s.value,
        "attempts": s.attempts,
        "failures": s.failures,
        "rate": round(rate, 6),
        "baseline_rate": round(rest_rate, 6),
        "difference_lower_bound": round(lower, 6),
        "margin": policy.margin,
    }
    return Alert(AlertKind.FAILURE_SPIKE, severity, f"{s.dimension}:{s.value}", message, evidence)


# --- authentication failures --------------------------------------------------------------


@dataclass(frozen=True)
class AuthFailure:
    """``count`` failed authentications from ``source`` (the client address) on ``route``
    (``POST /device/v1/checkin``...), the last at ``at`` and the first at ``first`` (default:
    ``at``): one failure, or a bucket of them as the server tallies them."""

    source: str
    at: datetime
    route: str = ""
    count: int = 1
    first: datetime | None = None


#: at most this many routes are named in an alert's evidence
MAX_ROUTES = 5


def auth_failure_bursts(
    failures: Sequence[AuthFailure],
    now: datetime,
    *,
    window: timedelta = timedelta(minutes=5),
    threshold: int = 20,
) -> list[Alert]:
    """Sources with ``threshold`` or more failures in the ``window`` before ``now``
    (critical at ten times that). Evidence: the address, the count, the window, the first
    and last failure and the routes tried (most tried first)."""
    recent: dict[str, list[AuthFailure]] = defaultdict(list)
    for f in failures:
        if now - window < f.at <= now and f.count > 0:
            recent[f.source].append(f)
    alerts = []
    for source, mine in sorted(recent.items()):
        count = sum(f.count for f in mine)
        if count < threshold:
            continue
        alerts.append(_burst_alert(source, mine, count, window, threshold))
    return alerts


def _burst_alert(
    source: str, mine: list[AuthFailure], count: int, window: timedelta, threshold: int
) -> Alert:
    severity = Severity.CRITICAL if count >= 10 * threshold else Severity.WARNING
    per_route: dict[str, int] = defaultdict(int)
    for f in mine:
        per_route[f.route or "unknown"] += f.count
    ranked = sorted(per_route.items(), key=lambda kv: (-kv[1], kv[0]))
    routes = ", ".join(f"{route} ({n})" for route, n in ranked[:MAX_ROUTES])
    minutes = window.total_seconds() / 60
    message = (
        f"{count} failed authentications from {source} in {minutes:g} min "
        f"(threshold {threshold}): {routes}"
    )
    evidence: dict[str, EvidenceValue] = {
        "source": source,
        "failures": count,
        "window_seconds": window.total_seconds(),
        "threshold": threshold,
        "first": min(f.first or f.at for f in mine).isoformat(),
        "last": max(f.at for f in mine).isoformat(),
        "routes": routes,
        "distinct_routes": len(per_route),
    }
    return Alert(AlertKind.AUTH_FAILURE_BURST, severity, f"source:{source}", message, evidence)


# --- download volume ----------------------------------------------------------------------


class DownloadUsage(NamedTuple):
    """What one downloader fetched in the scanned window: ``bytes_downloaded`` over
    ``requests`` requests for ``targets`` distinct files; ``expected_bytes``: the size of what
    it was assigned in that window (0 when nothing). ``device_id`` is a device whose identity
    was verified, or, when ``anonymous``, the client address of downloads that proved none
    (a public mirror's visitors, or a device id claimed without its credential)."""

    device_id: str
    bytes_downloaded: int
    expected_bytes: int = 0
    requests: int = 0
    targets: int = 0
    anonymous: bool = False


@dataclass(frozen=True)
class VolumePolicy:
    """Flag a downloader above ``factor`` times the most it should need: its assignment, the
    fleet's median, or ``floor_bytes`` (metadata polls), whichever is largest."""

    factor: float = 3.0
    floor_bytes: int = 1 << 20
    critical_factor: float = 20.0


def download_volume(
    usage: Sequence[DownloadUsage], policy: VolumePolicy = VolumePolicy()
) -> list[Alert]:
    if not usage:
        return []
    median = statistics.median(u.bytes_downloaded for u in usage)
    alerts = []
    for u in sorted(usage, key=lambda u: (u.anonymous, u.device_id)):
        allowance = max(u.expected_bytes, median, policy.floor_bytes)
        ratio = u.bytes_downloaded / allowance
        if ratio <= policy.factor:
            continue
        alerts.append(_volume_alert(u, ratio, median, policy))
    return alerts


def _volume_alert(u: DownloadUsage, ratio: float, median: float, policy: VolumePolicy) -> Alert:
    severity = Severity.CRITICAL if ratio >= policy.critical_factor else Severity.WARNING
    who = f"unauthenticated client {u.device_id}" if u.anonymous else f"device {u.device_id}"
    message = (
        f"{who} downloaded {u.bytes_downloaded:,} bytes in {u.requests} request(s), "
        f"{ratio:.1f} times what its updates and the fleet's median explain"
    )
    evidence: dict[str, EvidenceValue] = {
        "bytes_downloaded": u.bytes_downloaded,
        "requests": u.requests,
        "targets": u.targets,
        "expected_bytes": u.expected_bytes,
        "fleet_median_bytes": median,
        "ratio": round(ratio, 3),
        "factor": policy.factor,
        "floor_bytes": policy.floor_bytes,
    }
    subject = f"source:{u.device_id}" if u.anonymous else f"device:{u.device_id}"
    return Alert(AlertKind.DOWNLOAD_VOLUME, severity, subject, message, evidence)


# --- everything at once -------------------------------------------------------------------


@dataclass(frozen=True)
class FleetSignals:
    """What the server gathered for one scan window."""

    segments: Sequence[SegmentOutcomes] = ()
    fleet_attempts: int = 0
    fleet_failures: int = 0
    verification: Sequence[VerificationReport] = ()
    manifests: Sequence[ManifestObservation] = ()
    running: Sequence[RunningFirmware] = ()
    published: Mapping[str, Collection[str]] = field(default_factory=dict)
    factory_versions: Collection[str] = ()
    auth_failures: Sequence[AuthFailure] = ()
    downloads: Sequence[DownloadUsage] = ()


@dataclass(frozen=True)
class AnomalyPolicy:
    """Every rule's thresholds (defaults in docs/DESIGN.md, "Anomaly rules"). An impossible
    value is refused when the policy is made (``PolicyError`` naming every fault), so a
    server never starts with a rule that can never fire or always fires."""

    spike: SpikePolicy = SpikePolicy()
    verification_fleet_threshold: int = 3
    auth_window: timedelta = timedelta(minutes=5)
    auth_threshold: int = 20
    volume: VolumePolicy = VolumePolicy()

    def __post_init__(self) -> None:
        problems = policy_problems(self)
        if problems:
            raise PolicyError("invalid anomaly policy: " + "; ".join(problems), problems=problems)


def policy_problems(p: AnomalyPolicy) -> tuple[str, ...]:
    """What is wrong with a policy's values (empty: nothing)."""
    checks = [
        (p.spike.min_attempts >= 1, "spike.min_attempts must be >= 1"),
        (0 <= p.spike.margin < 1, "spike.margin must be in [0, 1)"),
        (p.spike.ratio >= 1, "spike.ratio must be >= 1"),
        (0 < p.spike.alpha < 1, "spike.alpha must be in (0, 1)"),
        (p.verification_fleet_threshold >= 1, "verification_fleet_threshold must be >= 1"),
        (p.auth_window.total_seconds() > 0, "auth_window must be positive"),
        (p.auth_threshold >= 1, "auth_threshold must be >= 1"),
        (p.volume.factor >= 1, "volume.factor must be >= 1"),
        (p.volume.floor_bytes >= 1, "volume.floor_bytes must be >= 1"),
        (
            p.volume.critical_factor >= p.volume.factor,
            "volume.critical_factor must be >= volume.factor",
        ),
    ]
    return tuple(message for ok, message in checks if not ok)


def scan(
    signals: FleetSignals, now: datetime, policy: AnomalyPolicy = AnomalyPolicy()
) -> list[Alert]:
    """Every rule over one window's signals; critical alerts first, then by kind and subject."""
    alerts = [
        *failure_spikes(
            signals.segments, signals.fleet_attempts, signals.fleet_failures, policy.spike
        ),
        *verification_failures(
            signals.verification, fleet_threshold=policy.verification_fleet_threshold
        ),
        *manifest_anomalies(signals.manifests),
        *unknown_firmware(
            signals.running, signals.published, factory_versions=signals.factory_versions
        ),
        *auth_failure_bursts(
            signals.auth_failures, now, window=policy.auth_window, threshold=policy.auth_threshold
        ),
        *download_volume(signals.downloads, policy.volume),
    ]
    order = {Severity.CRITICAL: 0, Severity.WARNING: 1}
    return sorted(alerts, key=lambda a: (order[a.severity], a.kind.value, a.subject))

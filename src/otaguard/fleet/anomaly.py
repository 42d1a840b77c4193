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
    source: str  # the client address the failure came from
    at: datetime


def auth_failure_bursts(
    failures: Sequence[AuthFailure],
    now: datetime,
    *,
    window: timedelta = timedelta(minutes=5),
    threshold: int = 20,
) -> list[Alert]:
    """Sources with ``threshold`` or more failures in the ``window`` before ``now``
    (critical at ten times that)."""
    recent: dict[str, list[datetime]] = defaultdict(list)
    for f in failures:
        if now - window < f.at <= now:
            recent[f.source].append(f.at)
    alerts = []
    for source, times in sorted(recent.items()):
        if len(times) < threshold:
            continue
        severity = Severity.CRITICAL if len(times) >= 10 * threshold else Severity.WARNING
        minutes = window.total_seconds() / 60
        message = f"{len(times)} failed authentications from {source} in {minutes:g} min"
        evidence: dict[str, EvidenceValue] = {
            "failures": len(times),
            "window_seconds": window.total_seconds(),
            "threshold": threshold,
            "first": min(times).isoformat(),
            "last": max(times).isoformat(),
        }
        alerts.append(
            Alert(AlertKind.AUTH_FAILURE_BURST, severity, f"source:{source}", message, evidence)
        )
    return alerts


# --- download volume ----------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadUsage:
    """Bytes a device downloaded in the scanned window; ``expected_bytes``: the size of what
    it was assigned in that window (0 when nothing)."""

    device_id: str
    bytes_downloaded: int
    expected_bytes: int = 0


@dataclass(frozen=True)
class VolumePolicy:
    """Flag a device above ``factor`` times the most it should need: its assignment, the
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
    for u in sorted(usage, key=lambda u: u.device_id):
        allowance = max(u.expected_bytes, median, policy.floor_bytes)
        ratio = u.bytes_downloaded / allowance
        if ratio <= policy.factor:
            continue
        severity = Severity.CRITICAL if ratio >= policy.critical_factor else Severity.WARNING
        message = (
            f"device {u.device_id} downloaded {u.bytes_downloaded:,} bytes, {ratio:.1f} times "
            f"what its updates and the fleet's median explain"
        )
        evidence: dict[str, EvidenceValue] = {
            "bytes_downloaded": u.bytes_downloaded,
            "expected_bytes": u.expected_bytes,
            "fleet_median_bytes": median,
            "ratio": round(ratio, 3),
            "factor": policy.factor,
        }
        alerts.append(
            Alert(AlertKind.DOWNLOAD_VOLUME, severity, f"device:{u.device_id}", message, evidence)
        )
    return alerts


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
    spike: SpikePolicy = SpikePolicy()
    verification_fleet_threshold: int = 3
    auth_window: timedelta = timedelta(minutes=5)
    auth_threshold: int = 20
    volume: VolumePolicy = VolumePolicy()


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

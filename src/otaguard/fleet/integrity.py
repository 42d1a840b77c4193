"""Anomaly rules on what devices say about signed data and the firmware they run.

These catch attacks and tampering rather than bad releases (``fleet/anomaly.py`` has those):

- ``verification_failures``: devices refused signed data (a signature, metadata or hash check
  failed). One device may have a bad flash; several at once point at a tampered mirror, a
  broken release or a key problem;
- ``manifest_anomalies``: a device reports a security version below its anti-rollback floor
  (downgrade), or a manifest older than one already seen or with a reused nonce (replay). The
  server refuses such manifests; the alert tells an operator someone tried;
- ``unknown_firmware``: devices run a version the repository never published (or never for
  their hardware): a leaked build, a tampered device, or an inventory error.

Pure: plain values in, ``fleet.alerts.Alert`` values out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from otaguard.fleet.alerts import SAMPLE_IDS, Alert, AlertKind, EvidenceValue, Severity

# --- verification failures ----------------------------------------------------------------


@dataclass(frozen=True)
class VerificationReport:
    """A device reported that signed data or a download failed its checks (``code`` as the
    device reports it: ``verification``, ``assignment``, ``manifest``...)."""

    device_id: str
    code: str
    detail: str = ""


def verification_failures(
    reports: Sequence[VerificationReport], *, fleet_threshold: int = 3
) -> list[Alert]:
    """One warning per device; one critical fleet alert when ``fleet_threshold`` or more
    devices reported such failures in the scanned window."""
    by_device: dict[str, list[VerificationReport]] = defaultdict(list)
    for r in reports:
        by_device[r.device_id].append(r)
    alerts = []
    for device_id, mine in sorted(by_device.items()):
        codes = sorted({r.code for r in mine})
        message = (
            f"device {device_id} refused signed data {len(mine)} time(s) ({', '.join(codes)}): "
            f"{mine[-1].detail or 'no detail'}"
        )
        evidence: dict[str, EvidenceValue] = {
            "reports": len(mine),
            "codes": ",".join(codes),
            "last_detail": mine[-1].detail,
        }
        alerts.append(
            Alert(
                AlertKind.VERIFICATION_FAILURE,
                Severity.WARNING,
                f"device:{device_id}",
                message,
                evidence,
            )
        )
    if len(by_device) >= fleet_threshold:
        devices = sorted(by_device)
        message = (
            f"{len(devices)} devices refused signed data: a tampered mirror, a broken release "
            "or a key problem is more likely than bad flash"
        )
        evidence = {"devices": len(devices), "sample": ",".join(devices[:SAMPLE_IDS])}
        alerts.append(
            Alert(AlertKind.VERIFICATION_FAILURE, Severity.CRITICAL, "fleet", message, evidence)
        )
    return alerts


# --- downgrade and replay -----------------------------------------------------------------


@dataclass(frozen=True)
class ManifestObservation:
    """A version manifest a device sent, next to what the server knew before it.

    ``anti_rollback_floor``: the highest security version the device had committed;
    ``newest_seen_at``: the issue time of the newest manifest accepted from it;
    ``nonce_reused``: the manifest's nonce was seen before from this device; ``nonce`` and
    ``newest_nonce``: the manifest's and the newest accepted one's (evidence only);
    ``refused``: the server refused the manifest (a replay is never recorded);
    ``sequence`` / ``newest_sequence``: its sequence number and the highest accepted (a
    number not above it is a replay, whatever the clocks say)."""

    device_id: str
    security_version: int
    anti_rollback_floor: int
    issued_at: datetime
    newest_seen_at: datetime | None = None
    nonce_reused: bool = False
    nonce: str | None = None
    newest_nonce: str | None = None
    refused: bool = False
    sequence: int | None = None
    newest_sequence: int | None = None


def manifest_anomalies(observations: Sequence[ManifestObservation]) -> list[Alert]:
    """Downgrade and replay attempts, one alert per device and kind."""
    alerts: dict[str, Alert] = {}
    for o in observations:
        subject = f"device:{o.device_id}"
        if o.security_version < o.anti_rollback_floor:
            message = (
                f"device {o.device_id} reports security version {o.security_version}, below its "
                f"anti-rollback floor {o.anti_rollback_floor}: a downgrade attempt or a cloned key"
            )
            evidence: dict[str, EvidenceValue] = {
                "security_version": o.security_version,
                "anti_rollback_floor": o.anti_rollback_floor,
            }
            alert = Alert(
                AlertKind.DOWNGRADE_ATTEMPT, Severity.CRITICAL, subject, message, evidence
            )
            alerts.setdefault(alert.key, alert)
        older = o.newest_seen_at is not None and o.issued_at < o.newest_seen_at
        lower = (
            o.sequence is not None
            and o.newest_sequence is not None
            and o.sequence <= o.newest_sequence
        )
        if older or o.nonce_reused or lower:
            why = "reuses a nonce" if o.nonce_reused else "is older than one already accepted"
            if lower:
                why = f"has sequence {o.sequence}, not above the accepted {o.newest_sequence}"
            newest = o.newest_seen_at.isoformat() if o.newest_seen_at else "none"
            message = (
                f"device {o.device_id} sent a manifest of {o.issued_at.isoformat()} that {why} "
                f"(newest accepted: {newest}): a replay" + (", refused" if o.refused else "")
            )
            evidence = {
                "issued_at": o.issued_at.isoformat(),
                "newest_seen_at": o.newest_seen_at.isoformat() if o.newest_seen_at else "",
                "nonce_reused": o.nonce_reused,
                "nonce": o.nonce or "",
                "newest_nonce": o.newest_nonce or "",
                "refused": o.refused,
                **({"sequence": o.sequence or 0} if lower else {}),
            }
            alert = Alert(AlertKind.REPLAY_ATTEMPT, Severity.CRITICAL, subject, message, evidence)
            alerts.setdefault(alert.key, alert)
    return list(alerts.values())


# --- firmware the repository never published ----------------------------------------------


@dataclass(frozen=True)
class RunningFirmware:
    device_id: str
    hardware: str
    version: str


def unknown_firmware(
    running: Sequence[RunningFirmware],
    published: Mapping[str, Collection[str]],
    *,
    factory_versions: Collection[str] = (),
) -> list[Alert]:
    """Devices on a version absent from ``published`` (version -> hardware types it was
    published for) and ``factory_versions`` (critical), or published only for other hardware
    (warning). One alert per version and hardware type, with a sample of devices."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in running:
        if r.version in factory_versions:
            continue
        if r.version not in published or r.hardware not in published[r.version]:
            groups[(r.version, r.hardware)].append(r.device_id)
    alerts = []
    for (version, hardware), devices in sorted(groups.items()):
        never = version not in published
        severity = Severity.CRITICAL if never else Severity.WARNING
        what = "the repository never published" if never else f"not published for {hardware}"
        message = f"{len(devices)} {hardware} device(s) run version {version}, {what}"
        evidence: dict[str, EvidenceValue] = {
            "version": version,
            "hardware": hardware,
            "devices": len(devices),
            "published": not never,
            "sample": ",".join(sorted(devices)[:SAMPLE_IDS]),
        }
        subject = f"firmware:{version}@{hardware}"
        alerts.append(Alert(AlertKind.UNKNOWN_FIRMWARE, severity, subject, message, evidence))
    return alerts

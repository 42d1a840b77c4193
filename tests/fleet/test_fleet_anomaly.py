"""Anomaly rules: each injected anomaly class raises its explained alert, and a clean fleet
raises none (fleet/anomaly.py, fleet/integrity.py)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from otaguard.fleet.alerts import AlertKind, Severity
from otaguard.fleet.anomaly import (
    AuthFailure,
    DownloadUsage,
    FleetSignals,
    SegmentOutcomes,
    SpikePolicy,
    auth_failure_bursts,
    download_volume,
    failure_spikes,
    scan,
)
from otaguard.fleet.integrity import (
    ManifestObservation,
    RunningFirmware,
    VerificationReport,
    manifest_anomalies,
    unknown_firmware,
    verification_failures,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
IMAGE = 64 << 20
PUBLISHED = {"1.0": {"a", "b", "c"}, "1.1": {"a", "b", "c"}, "2.0": {"a", "b"}}


def clean_fleet(seed: int, devices: int = 2000, failure_rate: float = 0.01) -> FleetSignals:
    """A fleet updating normally: uniform small failure rate, honest manifests, published
    firmware, the odd mistyped credential, downloads of about one image (with resumes)."""
    rng = random.Random(seed)
    hardware = ["a", "b", "c"]
    regions = ["eu", "us", "apac"]
    attempts: Counter[tuple[str, str]] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    manifests, running, downloads, auth = [], [], [], []
    for i in range(devices):
        hw, region = hardware[i % 3], rng.choice(regions)
        version = "2.0" if hw != "c" else "1.1"
        failed = rng.random() < failure_rate
        for seg in (("hardware", hw), ("region", region), ("version", version)):
            attempts[seg] += 1
            failures[seg] += failed
        floor = rng.randint(1, 3)
        manifests.append(
            ManifestObservation(
                f"d{i}",
                floor + rng.randint(0, 1),
                floor,
                NOW - timedelta(seconds=rng.randint(1, 60)),
                NOW - timedelta(minutes=rng.randint(5, 60)),
            )
        )
        running.append(RunningFirmware(f"d{i}", hw, "1.0" if failed else version))
        got = (
            int(IMAGE * rng.uniform(1.0, 1.6))
            if rng.random() < 0.7
            else rng.randint(10_000, 500_000)
        )
        downloads.append(DownloadUsage(f"d{i}", got, IMAGE))
    for k in range(40):  # a few mistyped tokens from many addresses
        auth += [
            AuthFailure(f"10.0.{k}.{j}", NOW - timedelta(seconds=rng.randint(0, 600)))
            for j in range(rng.randint(1, 3))
        ]
    segments = [
        SegmentOutcomes(d, v, attempts[(d, v)], failures[(d, v)]) for d, v in sorted(attempts)
    ]
    total_failures = sum(failures[s] for s in attempts if s[0] == "hardware")
    return FleetSignals(
        segments=segments,
        fleet_attempts=devices,
        fleet_failures=total_failures,
        manifests=manifests,
        running=running,
        published=PUBLISHED,
        auth_failures=auth,
        downloads=downloads,
    )


@pytest.mark.parametrize("seed", range(6))
def test_a_clean_fleet_raises_no_alert(seed: int) -> None:
    assert scan(clean_fleet(seed), NOW) == []


def test_a_clean_fleet_with_a_higher_uniform_failure_rate_raises_no_spike() -> None:
    # a bad release everywhere is the rollout's business (pause), not a segment spike
    assert scan(clean_fleet(7, failure_rate=0.2), NOW) == []


# --- failure spikes -----------------------------------------------------------------------


def test_failure_spike_in_one_hardware_type() -> None:
    segments = [
        SegmentOutcomes("hardware", "a", 1000, 10),
        SegmentOutcomes("hardware", "b", 200, 60),
        SegmentOutcomes("region", "eu", 600, 40),
    ]
    alerts = failure_spikes(segments, 1200, 70)
    assert [a.subject for a in alerts] == ["hardware:b"]
    spike = alerts[0]
    assert spike.kind is AlertKind.FAILURE_SPIKE
    assert spike.severity is Severity.WARNING
    assert spike.evidence["rate"] == 0.3
    assert spike.evidence["baseline_rate"] == 0.01
    assert "60/200" in spike.message
    assert spike.key == "failure_spike:hardware:b"


def test_small_segments_and_small_excesses_are_not_spikes() -> None:
    segments = [SegmentOutcomes("tag", "lab", 20, 2), SegmentOutcomes("tag", "tiny", 5, 5)]
    assert failure_spikes(segments, 2000, 22) == []
    # 3 % against 1 %: significant with these numbers but within the 5-point margin
    assert failure_spikes([SegmentOutcomes("hardware", "b", 5000, 150)], 15000, 250) == []


def test_critical_spike_and_whole_fleet_segment() -> None:
    alerts = failure_spikes([SegmentOutcomes("version", "2.0", 100, 80)], 1100, 90)
    assert alerts[0].severity is Severity.CRITICAL
    assert failure_spikes([SegmentOutcomes("hardware", "a", 100, 80)], 100, 80) == []
    assert failure_spikes([], 100, 1) == []
    assert (
        failure_spikes(
            [SegmentOutcomes("hardware", "a", 100, 80)], 1000, 90, SpikePolicy(ratio=100)
        )
        == []
    )


# --- verification, downgrade, replay, unknown firmware -------------------------------------


def test_verification_failures_per_device_and_fleet() -> None:
    one = verification_failures([VerificationReport("d1", "verification", "sha256 mismatch")])
    assert [(a.severity, a.subject) for a in one] == [(Severity.WARNING, "device:d1")]
    assert "sha256 mismatch" in one[0].message
    many = verification_failures(
        [VerificationReport(f"d{i}", "assignment", "bad signature") for i in range(4)]
        + [VerificationReport("d0", "verification")]
    )
    fleet = [a for a in many if a.subject == "fleet"]
    assert len(fleet) == 1
    assert fleet[0].severity is Severity.CRITICAL
    assert fleet[0].evidence["devices"] == 4
    d0 = next(a for a in many if a.subject == "device:d0")
    assert d0.evidence == {"reports": 2, "codes": "assignment,verification", "last_detail": ""}
    assert verification_failures([]) == []


def test_downgrade_and_replay_attempts() -> None:
    honest = ManifestObservation("d1", 3, 3, NOW, NOW - timedelta(minutes=5))
    assert manifest_anomalies([honest]) == []
    downgrade = replace(honest, security_version=2)
    alerts = manifest_anomalies([downgrade, downgrade])
    assert [(a.kind, a.severity) for a in alerts] == [
        (AlertKind.DOWNGRADE_ATTEMPT, Severity.CRITICAL)
    ]
    assert alerts[0].evidence == {"security_version": 2, "anti_rollback_floor": 3}
    replay = replace(honest, issued_at=NOW - timedelta(hours=1))
    alerts = manifest_anomalies([replay])
    assert [a.kind for a in alerts] == [AlertKind.REPLAY_ATTEMPT]
    assert "older than one already accepted" in alerts[0].message
    nonce = replace(honest, nonce_reused=True)
    assert "reuses a nonce" in manifest_anomalies([nonce])[0].message
    first_ever = ManifestObservation("d2", 1, 0, NOW)
    assert manifest_anomalies([first_ever]) == []


def test_unknown_firmware() -> None:
    running = [
        RunningFirmware("d1", "a", "2.0"),
        RunningFirmware("d2", "c", "2.0"),  # 2.0 was never published for c
        RunningFirmware("d3", "a", "6.6.6"),
        RunningFirmware("d4", "b", "6.6.6"),
        RunningFirmware("d5", "a", "6.6.6"),
        RunningFirmware("d6", "a", "0.9-factory"),
    ]
    alerts = unknown_firmware(running, PUBLISHED, factory_versions={"0.9-factory"})
    by_subject = {a.subject: a for a in alerts}
    assert set(by_subject) == {"firmware:2.0@c", "firmware:6.6.6@a", "firmware:6.6.6@b"}
    assert by_subject["firmware:2.0@c"].severity is Severity.WARNING
    never = by_subject["firmware:6.6.6@a"]
    assert never.severity is Severity.CRITICAL
    assert never.evidence["sample"] == "d3,d5"
    assert "never published" in never.message
    # control: without the factory allowance the factory image is unknown too
    assert len(unknown_firmware(running, PUBLISHED)) == 4


# --- authentication bursts and download volume --------------------------------------------


def test_auth_failure_burst_from_one_source() -> None:
    burst = [AuthFailure("203.0.113.9", NOW - timedelta(seconds=i)) for i in range(25)]
    old = [AuthFailure("198.51.100.1", NOW - timedelta(minutes=30, seconds=i)) for i in range(50)]
    spread = [AuthFailure(f"192.0.2.{i}", NOW) for i in range(100)]
    alerts = auth_failure_bursts(burst + old + spread, NOW)
    assert [(a.subject, a.severity) for a in alerts] == [("source:203.0.113.9", Severity.WARNING)]
    assert alerts[0].evidence["failures"] == 25
    flood = [AuthFailure("203.0.113.9", NOW - timedelta(milliseconds=i)) for i in range(200)]
    assert auth_failure_bursts(flood, NOW)[0].severity is Severity.CRITICAL
    future = [AuthFailure("203.0.113.9", NOW + timedelta(seconds=1))] * 30
    assert auth_failure_bursts(future, NOW) == []


def test_unusual_download_volume() -> None:
    normal = [DownloadUsage(f"d{i}", IMAGE + i, IMAGE) for i in range(50)]
    looping = DownloadUsage("loop", 5 * IMAGE, IMAGE)
    scraper = DownloadUsage("scraper", 40 * IMAGE, 0)
    alerts = download_volume([*normal, looping, scraper])
    by_subject = {a.subject: a for a in alerts}
    assert set(by_subject) == {"device:loop", "device:scraper"}
    assert by_subject["device:loop"].severity is Severity.WARNING
    assert by_subject["device:scraper"].severity is Severity.CRITICAL
    assert by_subject["device:loop"].evidence["ratio"] == pytest.approx(5.0, rel=0.01)
    assert download_volume([]) == []
    # a device with no assignment polling metadata is not flagged against the floor
    assert download_volume([DownloadUsage("idle", 900_000)]) == []


# --- the whole scan -----------------------------------------------------------------------


def test_every_injected_anomaly_class_raises_its_alert() -> None:
    clean = clean_fleet(11)
    segments = [
        replace(s, failures=s.attempts // 2) if (s.dimension, s.value) == ("hardware", "c") else s
        for s in clean.segments
    ]
    extra_failures = (
        sum(s.failures for s in segments if s.dimension == "hardware") - clean.fleet_failures
    )
    dirty = replace(
        clean,
        segments=segments,
        fleet_failures=clean.fleet_failures + extra_failures,
        verification=[
            VerificationReport(f"d{i}", "verification", "bad signature") for i in range(5)
        ],
        manifests=[
            *clean.manifests,
            ManifestObservation("d1", 0, 2, NOW),
            ManifestObservation("d2", 2, 2, NOW - timedelta(hours=2), NOW),
        ],
        running=[*clean.running, RunningFirmware("d3", "a", "9.9")],
        auth_failures=[*clean.auth_failures, *(AuthFailure("203.0.113.9", NOW) for _ in range(30))],
        downloads=[*clean.downloads, DownloadUsage("d4", 50 * IMAGE, IMAGE)],
    )
    alerts = scan(dirty, NOW)
    assert {a.kind for a in alerts} == set(AlertKind)
    # critical first
    severities = [a.severity for a in alerts]
    assert severities == sorted(severities, key=lambda s: s is not Severity.CRITICAL)
    assert all(a.message and a.evidence for a in alerts)

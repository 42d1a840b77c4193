"""Traffic signals for the anomaly scan (fleet/tally.py, fleet/traffic.py) and the evidence of
the rules they feed: failed authentications per address (bucketed counts, routes named),
download volume per *proven* device (a false claim counts against the address, never the
device), replayed manifests with their times and nonces, and policy validation."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta

import pytest

from otaguard.errors import PolicyError
from otaguard.fleet.alerts import AlertKind, Severity
from otaguard.fleet.anomaly import (
    AnomalyPolicy,
    AuthFailure,
    DownloadUsage,
    FleetSignals,
    SpikePolicy,
    VolumePolicy,
    auth_failure_bursts,
    download_volume,
    scan,
)
from otaguard.fleet.integrity import ManifestObservation, manifest_anomalies
from otaguard.fleet.tally import WindowTally
from otaguard.fleet.traffic import (
    Proof,
    auth_failures,
    auth_key,
    bearer_claims,
    download_key,
    download_usage,
    proven,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
IMAGE = 8 << 20


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- the tally ----------------------------------------------------------------------------


def test_tally_sums_per_key_and_bucket_and_forgets_old_buckets() -> None:
    t = WindowTally(bucket_seconds=10)
    for i in range(25):  # 25 events over 25 s: three buckets of one key
        t.add(("a",), NOW + timedelta(seconds=i), 100)
    t.add(("b",), NOW, 7)
    buckets = t.read(NOW - timedelta(hours=1))
    a = [b for b in buckets if b.key == ("a",)]
    assert sum(b.events for b in a) == 25
    assert sum(b.amount for b in a) == 2500
    assert min(b.first for b in a) == NOW
    assert max(b.last for b in a) == NOW + timedelta(seconds=24)
    assert 2 <= len(a) <= 4
    # buckets whose last event is before ``since`` are dropped for good
    later = t.read(NOW + timedelta(seconds=20))
    assert {b.key for b in later} == {("a",)}
    assert t.read(NOW - timedelta(hours=1)) == later


def test_tally_memory_is_bounded_and_drops_the_oldest() -> None:
    t = WindowTally(bucket_seconds=1, max_keys=100)
    for i in range(1000):  # a flood of distinct sources
        t.add((f"10.0.{i // 256}.{i % 256}",), NOW + timedelta(milliseconds=i))
    buckets = t.read(NOW - timedelta(hours=1))
    assert len(buckets) == 100
    assert t.dropped == 900
    assert {b.key[0] for b in buckets} == {f"10.0.{i // 256}.{i % 256}" for i in range(900, 1000)}


def test_tally_is_safe_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    t = WindowTally()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: t.add(("x",), NOW, 1), range(4000)))
    assert sum(b.events for b in t.read(NOW - timedelta(minutes=1))) == 4000


# --- authentication failures --------------------------------------------------------------


def test_auth_buckets_become_a_burst_with_address_count_window_and_routes() -> None:
    t = WindowTally()
    for i in range(30):
        t.add(auth_key("203.0.113.9", "POST /device/v1/checkin"), NOW - timedelta(seconds=i))
    for i in range(6):
        t.add(auth_key("203.0.113.9", "POST /api/v1/auth/login"), NOW - timedelta(seconds=i))
    for i in range(19):  # one short of the threshold: no alert
        t.add(auth_key("198.51.100.7", "GET /api/v1/devices"), NOW - timedelta(seconds=i))
    failures = auth_failures(t.read(NOW - timedelta(minutes=5)))
    (alert,) = auth_failure_bursts(failures, NOW)
    assert alert.kind is AlertKind.AUTH_FAILURE_BURST
    assert alert.subject == "source:203.0.113.9"
    assert alert.severity is Severity.WARNING
    e = alert.evidence
    assert e["source"] == "203.0.113.9"
    assert e["failures"] == 36
    assert e["window_seconds"] == 300
    assert e["threshold"] == 20
    assert e["routes"] == "POST /device/v1/checkin (30), POST /api/v1/auth/login (6)"
    assert e["distinct_routes"] == 2
    assert e["first"] == (NOW - timedelta(seconds=29)).isoformat()
    assert e["last"] == NOW.isoformat()
    assert "36 failed authentications from 203.0.113.9" in alert.message


def test_burst_counts_bucketed_failures_and_respects_the_window() -> None:
    bucket = AuthFailure("192.0.2.1", NOW, "r", count=19, first=NOW - timedelta(seconds=9))
    assert auth_failure_bursts([bucket], NOW) == []
    (alert,) = auth_failure_bursts([bucket, AuthFailure("192.0.2.1", NOW, "r")], NOW)
    assert alert.evidence["failures"] == 20
    assert alert.evidence["first"] == (NOW - timedelta(seconds=9)).isoformat()
    old = AuthFailure("192.0.2.1", NOW - timedelta(minutes=6), "r", count=500)
    assert auth_failure_bursts([old], NOW) == []
    flood = AuthFailure("192.0.2.1", NOW, "r", count=200)
    assert auth_failure_bursts([flood], NOW)[0].severity is Severity.CRITICAL
    assert auth_failure_bursts([flood], NOW, threshold=201) == []
    many = [AuthFailure("192.0.2.1", NOW, f"GET /r{i}") for i in range(30)]
    routes = str(auth_failure_bursts(many, NOW)[0].evidence["routes"])
    assert routes.count("(1)") == 5  # at most five routes named
    assert auth_failure_bursts(many, NOW)[0].evidence["distinct_routes"] == 30


# --- downloads ----------------------------------------------------------------------------


def fleet_downloads(t: WindowTally, devices: int, rng: random.Random) -> dict[str, str]:
    """Honest devices: each downloads its image once, some resume after a cut."""
    stored = {}
    for i in range(devices):
        device, secret = f"d{i}", f"secret-{i}"
        stored[device] = digest(secret)
        key = download_key(Proof.BEARER, device, digest(secret), f"10.1.0.{i % 250}", "img")
        if rng.random() < 0.2:  # cut, then resumed from where it stopped
            cut = rng.randint(1, IMAGE - 1)
            t.add(key, NOW, cut)
            t.add(key, NOW + timedelta(seconds=30), IMAGE - cut)
        else:
            t.add(key, NOW, IMAGE)
    return stored


def usage(t: WindowTally, stored: dict[str, str], devices: int) -> list[DownloadUsage]:
    expected = {f"d{i}": IMAGE for i in range(devices)}
    return download_usage(t.read(NOW - timedelta(hours=1)), stored, expected)


@pytest.mark.parametrize("seed", range(4))
def test_honest_downloads_with_resumes_raise_nothing(seed: int) -> None:
    t = WindowTally()
    stored = fleet_downloads(t, 300, random.Random(seed))
    found = usage(t, stored, 300)
    assert len(found) == 300
    assert not any(u.anonymous for u in found)
    assert download_volume(found) == []


def test_a_looping_device_is_named_with_its_requests_and_bytes() -> None:
    t = WindowTally()
    stored = fleet_downloads(t, 100, random.Random(1))
    stored["d100"] = digest("secret-100")  # one more device, looping on its image
    key = download_key(Proof.BEARER, "d100", stored["d100"], "10.1.0.100", "img")
    for k in range(12):
        t.add(key, NOW + timedelta(seconds=k), IMAGE)
    (alert,) = download_volume(usage(t, stored, 101))
    assert alert.subject == "device:d100"
    e = alert.evidence
    assert e["requests"] == 12
    assert e["targets"] == 1
    assert e["bytes_downloaded"] == 12 * IMAGE
    assert e["expected_bytes"] == IMAGE
    assert e["ratio"] == pytest.approx(12.0)
    assert alert.severity is Severity.WARNING


def test_a_false_claim_counts_against_the_address_not_the_device() -> None:
    t = WindowTally()
    stored = fleet_downloads(t, 100, random.Random(2))
    forged = download_key(Proof.BEARER, "d3", digest("guessed"), "198.51.100.66", "img")
    for k in range(30):
        t.add(forged, NOW + timedelta(seconds=k), IMAGE)
    alerts = download_volume(usage(t, stored, 100))
    assert [(a.subject, a.severity) for a in alerts] == [
        ("source:198.51.100.66", Severity.CRITICAL)
    ]
    assert "unauthenticated client 198.51.100.66" in alerts[0].message
    assert alerts[0].evidence["expected_bytes"] == 0  # an address has no assignment


def test_proofs() -> None:
    stored = {"d1": digest("s1")}
    assert proven(download_key(Proof.BEARER, "d1", digest("s1"), "a", "t"), stored)
    assert not proven(download_key(Proof.BEARER, "d1", digest("s2"), "a", "t"), stored)
    assert not proven(download_key(Proof.BEARER, "nobody", digest("s1"), "a", "t"), stored)
    assert proven(download_key(Proof.CERTIFICATE, "d9", "", "a", "t"), {})
    assert not proven(download_key(Proof.CERTIFICATE, "", "", "a", "t"), {})
    assert not proven(download_key(Proof.NONE, "d1", "", "a", "t"), stored)
    t = WindowTally()
    t.add(download_key(Proof.BEARER, "d1", "x", "a", "t"), NOW)
    t.add(download_key(Proof.CERTIFICATE, "d2", "", "a", "t"), NOW)
    t.add(auth_key("a", "r"), NOW)  # auth keys are not downloads
    assert bearer_claims(t.read(NOW - timedelta(1))) == {"d1"}


def test_anonymous_downloads_group_by_address_and_count_files() -> None:
    t = WindowTally()
    for f in range(40):  # a scraper walking every artifact once
        t.add(download_key(Proof.NONE, "", "", "203.0.113.5", f"file{f}"), NOW, IMAGE)
    (u,) = download_usage(t.read(NOW - timedelta(1)), {}, {})
    assert (u.device_id, u.anonymous, u.targets, u.requests) == ("203.0.113.5", True, 40, 40)
    (alert,) = download_volume([u, *(DownloadUsage(f"d{i}", IMAGE, IMAGE) for i in range(9))])
    assert alert.subject == "source:203.0.113.5"


# --- replays ------------------------------------------------------------------------------


def test_a_refused_replay_names_times_and_nonces() -> None:
    older = ManifestObservation(
        "d1", 2, 2, NOW - timedelta(hours=1), NOW, nonce="aa", newest_nonce="bb", refused=True
    )
    (alert,) = manifest_anomalies([older])
    assert (alert.kind, alert.subject, alert.severity) == (
        AlertKind.REPLAY_ATTEMPT,
        "device:d1",
        Severity.CRITICAL,
    )
    assert alert.evidence == {
        "issued_at": (NOW - timedelta(hours=1)).isoformat(),
        "newest_seen_at": NOW.isoformat(),
        "nonce_reused": False,
        "nonce": "aa",
        "newest_nonce": "bb",
        "refused": True,
    }
    assert "older than one already accepted" in alert.message
    assert alert.message.endswith("refused")
    again = ManifestObservation("d1", 2, 2, NOW, NOW, nonce_reused=True, nonce="bb")
    assert "reuses a nonce" in manifest_anomalies([again])[0].message
    # the control: the same manifest, newer than the newest accepted, is no replay
    assert manifest_anomalies([ManifestObservation("d1", 2, 2, NOW, NOW - timedelta(1))]) == []


# --- policy -------------------------------------------------------------------------------


def test_the_policy_refuses_impossible_thresholds_naming_every_fault() -> None:
    AnomalyPolicy()  # the defaults are valid
    with pytest.raises(PolicyError) as caught:
        AnomalyPolicy(
            auth_threshold=0,
            auth_window=timedelta(0),
            volume=VolumePolicy(factor=0.5, floor_bytes=0),
            spike=SpikePolicy(alpha=2.0),
        )
    problems = caught.value.problems
    assert len(problems) == 5
    assert "auth_threshold must be >= 1" in problems
    assert "volume.factor must be >= 1" in problems


def test_scan_uses_the_policy_thresholds() -> None:
    signals = FleetSignals(auth_failures=[AuthFailure("192.0.2.9", NOW, "r", count=8)])
    assert scan(signals, NOW) == []
    (alert,) = scan(signals, NOW, AnomalyPolicy(auth_threshold=5))
    assert alert.evidence["threshold"] == 5

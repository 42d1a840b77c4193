"""Prometheus metrics of one server process (a registry per app, so tests stay independent)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class ServerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.checkins = Counter(
            "otaguard_checkins", "Device check-ins", ["outcome"], registry=self.registry
        )
        self.events = Counter(
            "otaguard_device_events", "Device status events", ["event"], registry=self.registry
        )
        self.auth_failures = Counter(
            "otaguard_auth_failures", "Refused authentications", ["api"], registry=self.registry
        )
        self.manifest_failures = Counter(
            "otaguard_manifest_failures",
            "Check-ins refused: version manifest missing, malformed or not verified",
            registry=self.registry,
        )
        self.bytes_served = Counter(
            "otaguard_artifact_bytes_served", "Artifact bytes sent", registry=self.registry
        )
        self.checkin_batch = Histogram(
            "otaguard_checkin_batch_size",
            "Check-ins handled per database transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "otaguard_request_seconds", "Request latency", ["route"], registry=self.registry
        )

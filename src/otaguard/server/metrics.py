"""Prometheus metrics of one server process (a registry per app, so tests stay independent)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class ServerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self._device_traffic()
        self._deltas()
        self._latencies()
        self._rollouts_and_alerts()
        self._push()

    def _device_traffic(self) -> None:
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

    def _deltas(self) -> None:
        self.deltas_offered = Counter(
            "otaguard_deltas_offered",
            "Assignments that offered a delta (the device reported the delta's source image)",
            registry=self.registry,
        )
        self.deployment_bytes_sent = Gauge(
            "otaguard_deployment_bytes_sent",
            "Bytes served for a deployment's assignments (full images and deltas)",
            ["deployment"],
            registry=self.registry,
        )
        self.deployment_delta_bytes = Gauge(
            "otaguard_deployment_delta_bytes",
            "Of a deployment's bytes sent, those of delta files",
            ["deployment"],
            registry=self.registry,
        )
        self.deployment_full_bytes = Gauge(
            "otaguard_deployment_full_bytes",
            "Bytes full images would have needed for the devices served in a deployment",
            ["deployment"],
            registry=self.registry,
        )

    def _latencies(self) -> None:
        self.checkin_batch = Histogram(
            "otaguard_checkin_batch_size",
            "Check-ins handled per database transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "otaguard_request_seconds", "Request latency", ["route"], registry=self.registry
        )
        self.checkin_seconds = Histogram(
            "otaguard_checkin_seconds",
            "Check-in latency, from the verified claim to the reply (batch wait included)",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )

    def _rollouts_and_alerts(self) -> None:
        self.alerts = Counter(
            "otaguard_alerts", "Alerts raised (new keys), by kind", ["kind"], registry=self.registry
        )
        self.rollout_targets = Gauge(
            "otaguard_rollout_targets",
            "Devices of running rollouts per phase and status (pending, downloading, "
            "installing, succeeded, failed, rolled_back, silent)",
            ["deployment", "phase", "status"],
            registry=self.registry,
        )
        self.tally_dropped = Gauge(
            "otaguard_tally_dropped",
            "Buckets the in-memory traffic tallies dropped when full (auth failures, "
            "downloads): the anomaly scan saw less than happened",
            ["tally"],
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "otaguard_webhook_deliveries",
            "Alert webhook deliveries by outcome",
            ["outcome"],
            registry=self.registry,
        )

    def _push(self) -> None:
        self.push_wakeups = Counter(
            "otaguard_push_wakeups",
            "MQTT wake-ups by outcome: published (acknowledged by the broker), dropped "
            "(pending set full), deferred (broker unavailable or busy, kept and retried)",
            ["outcome"],
            registry=self.registry,
        )
        self.push_broker_errors = Counter(
            "otaguard_push_broker_errors",
            "Failed or lost connections to the MQTT broker",
            registry=self.registry,
        )
        self.push_connected = Gauge(
            "otaguard_push_broker_connected",
            "1 while connected to the MQTT broker",
            registry=self.registry,
        )

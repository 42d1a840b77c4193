"""The alert vocabulary shared by the anomaly rules (``fleet/anomaly.py``, ``fleet/integrity.py``).

An alert is a value: what kind of problem, how bad, about whom, a sentence for people and the
figures behind it. The server stores, deduplicates (by ``Alert.key``), counts and pushes them;
nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

EvidenceValue = str | int | float | bool
#: at most this many device ids are listed in one alert's evidence
SAMPLE_IDS = 10


class AlertKind(StrEnum):
    FAILURE_SPIKE = "failure_spike"
    VERIFICATION_FAILURE = "verification_failure"
    DOWNGRADE_ATTEMPT = "downgrade_attempt"
    REPLAY_ATTEMPT = "replay_attempt"
    UNKNOWN_FIRMWARE = "unknown_firmware"
    AUTH_FAILURE_BURST = "auth_failure_burst"
    DOWNLOAD_VOLUME = "download_volume"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Alert:
    """``subject``: what the alert is about, as ``kind:value`` (``device:d1``, ``hardware:x``,
    ``source:10.0.0.7``, ``fleet``). ``key`` is stable for the same problem about the same
    subject, so the server can raise it once and update it."""

    kind: AlertKind
    severity: Severity
    subject: str
    message: str
    evidence: Mapping[str, EvidenceValue]

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.subject}"

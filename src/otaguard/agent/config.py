"""Agent configuration (TOML on a real device; built in code by the simulator).

Every value is checked when the config is read (``agent/config_values.py``: types, durations,
https only), and ``missing_files`` lists every file the config names that is not there, so an
operator's mistake ends in one message naming the keys, before anything runs."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otaguard.agent.config_values import check_url, check_values
from otaguard.agent.install_window import parse_windows
from otaguard.agent.push_config import MqttConfig
from otaguard.director.wakeup import topic
from otaguard.errors import ConfigError, WakeUpError
from otaguard.fleet.windows import Schedule


@dataclass(frozen=True)
class Pkcs11Key:
    """The manifest signing key in a PKCS#11 token (``[agent.manifest_key_pkcs11]``): the
    module (``.so``; default ``$PYKCS11LIB``), the token label, the key's CKA_ID, and where the
    PIN comes from: the environment variable ``pin_env`` or the file ``pin_file`` (0600). The
    PIN itself is never in the config and never logged."""

    token_label: str
    module: str | None = None
    key_id: int = 2
    pin_env: str = "OTAGUARD_PKCS11_PIN"
    pin_file: Path | None = None

    @classmethod
    def from_table(cls, table: Any, base: Path) -> Pkcs11Key:
        if not isinstance(table, dict):
            raise ConfigError("manifest_key_pkcs11 must be a table")
        data = dict(table)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown manifest_key_pkcs11 settings {sorted(unknown)}")
        if "pin_file" in data:
            data["pin_file"] = (base / data["pin_file"]).resolve()
        try:
            key = cls(**data)
        except TypeError as exc:
            raise ConfigError(f"manifest_key_pkcs11: {exc}") from exc
        if not isinstance(key.key_id, int) or not 0 < key.key_id < 1 << 31:
            raise ConfigError("manifest_key_pkcs11.key_id must be a positive integer")
        return key


@dataclass
class AgentConfig:
    device_id: str
    hardware: str
    server_url: str
    state_dir: Path
    director_key_file: Path
    trusted_root_file: Path
    # The bearer credential: needed only without a client certificate (mTLS), and then never
    # sent (the certificate proves who the device is).
    credential_file: Path | None = None
    ca_file: Path | None = None
    # Base URL of a mirror serving /tuf/metadata and /tuf/targets (a static file server, a CDN);
    # default: the server. Signed content only: the device credential is never sent there.
    repository_url: str | None = None
    # The device's own key (it signs version manifests); default: state_dir/manifest.key;
    # or a key in a PKCS#11 token (agent/manifest_key.py), which then takes precedence.
    manifest_key_file: Path | None = None
    manifest_key_pkcs11: Pkcs11Key | None = None
    # mTLS device identity (otaguard device enroll): the device certificate and its key; when
    # set, the server authenticates the device by it and the bearer credential is not used.
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    # Renew the client certificate (new key pair, agent/renewal.py) once less than this
    # fraction of its validity is left (0: never); a failed renewal is retried after
    # cert_renew_retry seconds, doubling up to cert_renew_retry_max.
    cert_renew_fraction: float = 1 / 3
    cert_renew_retry: float = 300.0
    cert_renew_retry_max: float = 86400.0
    health_command: list[str] = field(default_factory=list)
    health_timeout: float = 60.0
    # Health reports for the server's health gate (agent/health_reports.py): every
    # health_report_interval during health_report_window after a committed update (0: none),
    # and every health_baseline_interval otherwise (0: none), so devices still on the old
    # version are the gate's control cohort. health_probe_command prints a JSON object:
    # "boot_seconds", "restarts" and other numbers (custom metrics); optional.
    health_report_window: float = 3600.0
    health_report_interval: float = 300.0
    health_baseline_interval: float = 21600.0
    health_probe_command: list[str] = field(default_factory=list)
    # When installing (and rebooting into the new image) is allowed, in the device's local
    # time (agent/install_window.py, grammar in fleet/windows.py); empty: any time.
    maintenance_windows: list[str] = field(default_factory=list)
    poll_interval: float = 300.0
    poll_jitter: float = 0.2
    max_download_attempts: int = 8  # consecutive attempts without progress
    max_download_requests: int = 200  # requests for one target in all
    cancel_check_seconds: float = 30.0  # how often a download asks whether it was cancelled
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    checkpoint_bytes: int = 4 << 20  # slot fsync + read-back cadence (bench/agent_memory.py)
    # A checkpoint also journals the progress (for resuming after a power cut) when this
    # long has passed since the last one: on a fast link the journal is not rewritten
    # every few MiB (flash wear, fsyncs); on a slow one every checkpoint is journaled.
    checkpoint_journal_seconds: float = 1.0
    request_timeout: float = 30.0
    # Allow an http:// server (loopback tests only: the credential would travel in clear).
    insecure_http: bool = False
    # Push wake-ups over MQTT (``[agent.mqtt]``, needs ``otaguard[mqtt]``): check in soon after
    # a wake-up signed by the director key, so poll_interval can be long (agent/push.py).
    mqtt: MqttConfig | None = None

    def __post_init__(self) -> None:
        check_url("server_url", self.server_url, insecure=self.insecure_http)
        if self.repository_url is not None:
            check_url("repository_url", self.repository_url, insecure=self.insecure_http)
        if self.credential_file is None and self.client_cert is None:
            raise ConfigError(
                "credential_file is required unless client_cert_file and client_key_file "
                "(mutual TLS) are set"
            )
        if bool(self.client_cert_file) != bool(self.client_key_file):
            raise ConfigError("client_cert_file and client_key_file go together")
        if not 0 <= self.cert_renew_fraction < 1:
            raise ConfigError("cert_renew_fraction must be at least 0 and below 1")
        if self.cert_renew_retry < 0 or self.cert_renew_retry_max < self.cert_renew_retry:
            raise ConfigError("cert_renew_retry must be >= 0 and <= cert_renew_retry_max")
        if self.checkpoint_bytes < 1 or self.checkpoint_journal_seconds < 0:
            raise ConfigError("checkpoint_bytes must be >= 1, checkpoint_journal_seconds >= 0")
        if self.mqtt is not None:
            try:
                topic(self.mqtt.topic_prefix, self.device_id)
            except WakeUpError as exc:
                raise ConfigError(f"mqtt: {exc}") from exc
        if self.health_report_window > 0 and self.health_report_interval <= 0:
            raise ConfigError("health_report_interval must be above 0 when reports are on")
        parse_windows("maintenance_windows", self.maintenance_windows)

    @property
    def schedule(self) -> Schedule | None:
        """The parsed ``maintenance_windows`` (None: no restriction)."""
        return parse_windows("maintenance_windows", self.maintenance_windows)

    @property
    def tuf_dir(self) -> Path:
        return self.state_dir / "tuf"

    @property
    def manifest_key_path(self) -> Path:
        return self.manifest_key_file or self.state_dir / "manifest.key"

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal.json"

    @property
    def client_cert(self) -> tuple[Path, Path] | None:
        if self.client_cert_file and self.client_key_file:
            return self.client_cert_file, self.client_key_file
        return None

    def credential(self) -> str | None:
        """The bearer credential, or None when the device authenticates by its client
        certificate (mutual TLS): then it is never read and never sent."""
        if self.client_cert is not None or self.credential_file is None:
            return None
        try:
            return self.credential_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read device credential {self.credential_file}: {exc}"
            ) from exc

    @classmethod
    def from_toml(cls, path: Path) -> AgentConfig:
        try:
            raw: dict[str, Any] = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read agent config {path}: {exc}") from exc
        base = path.parent
        paths = (
            "state_dir",
            "credential_file",
            "director_key_file",
            "trusted_root_file",
            "ca_file",
            "manifest_key_file",
            "client_cert_file",
            "client_key_file",
        )
        try:
            agent = dict(raw["agent"])
        except KeyError as exc:
            raise ConfigError(f"{path}: missing [agent] table") from exc
        for key in paths:
            if key in agent:
                agent[key] = (base / agent[key]).resolve()
        if "manifest_key_pkcs11" in agent:
            agent["manifest_key_pkcs11"] = Pkcs11Key.from_table(agent["manifest_key_pkcs11"], base)
        if "mqtt" in agent:
            try:
                agent["mqtt"] = MqttConfig.from_table(agent["mqtt"], base)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from exc
        known = set(cls.__dataclass_fields__)
        unknown = set(agent) - known
        if unknown:
            raise ConfigError(f"{path}: unknown agent settings {sorted(unknown)}")
        try:
            return cls(**check_values(agent))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        except TypeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def missing_files(self) -> list[str]:
        """``key (path)`` for every file this config needs that does not exist."""
        needed: dict[str, Path | None] = {
            "director_key_file": self.director_key_file,
            "trusted_root_file": self.trusted_root_file,
            "ca_file": self.ca_file,
            "client_cert_file": self.client_cert_file,
            "client_key_file": self.client_key_file,
        }
        if self.client_cert is None:
            needed["credential_file"] = self.credential_file
        if self.manifest_key_pkcs11 is None:
            needed["manifest_key_file"] = self.manifest_key_path
        elif self.manifest_key_pkcs11.pin_file is not None:
            needed["manifest_key_pkcs11.pin_file"] = self.manifest_key_pkcs11.pin_file
        missing = [f"{k} ({p})" for k, p in needed.items() if p is not None and not p.exists()]
        return missing + (self.mqtt.missing_files() if self.mqtt is not None else [])

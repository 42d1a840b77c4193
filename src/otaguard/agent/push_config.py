"""The agent's optional push settings (``[agent.mqtt]`` in agent.toml), checked when read.

Why a module of its own: push is optional (``pip install 'otaguard[mqtt]'``) and its settings
are a table of their own; like every other agent setting, a mistake here ends in one clear
``ConfigError`` naming the key before anything runs, never halfway through a cycle.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otaguard.agent.config_values import parse_duration
from otaguard.agent.wake import DEFAULT_MIN_INTERVAL
from otaguard.director.wakeup import DEFAULT_PREFIX, MAX_AGE_SECONDS, check_topic_prefix
from otaguard.errors import ConfigError

_DURATIONS = ("min_wake_interval", "keepalive", "max_wake_age")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class MqttConfig:
    """Where the device listens for wake-ups: the broker (``host``, ``port``: 8883 with TLS,
    else 1883), TLS (on unless ``tls = false``; ``ca_file``: the broker's CA, default the
    system's), the broker login (``username``, the password read from ``password_file``, never
    written in the config), the topic prefix the server publishes under, and the device's rate
    limit: at most one early check-in per ``min_wake_interval`` seconds."""

    host: str
    port: int | None = None
    tls: bool = True
    ca_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    topic_prefix: str = DEFAULT_PREFIX
    min_wake_interval: float = DEFAULT_MIN_INTERVAL
    keepalive: float = 60.0
    max_wake_age: float = MAX_AGE_SECONDS

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("mqtt.host: expected a non-empty string")
        port = self.port
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
            raise ConfigError(f"mqtt.port: expected a whole number, not {port!r}")
        if port is not None and not 0 < port < 65536:
            raise ConfigError(f"mqtt.port: {port} is not a TCP port")
        if not isinstance(self.tls, bool):
            raise ConfigError("mqtt.tls: expected true or false")
        if self.username is not None and (not isinstance(self.username, str) or not self.username):
            raise ConfigError("mqtt.username: expected a non-empty string")
        if self.password_file is not None and self.username is None:
            raise ConfigError("mqtt.password_file needs mqtt.username")
        if self.password_file is not None and not self.tls and not is_loopback(self.host):
            raise ConfigError(
                f"mqtt: the broker password would travel in clear text to {self.host}; "
                "set tls = true (plain MQTT with a password is allowed on loopback only)"
            )
        if self.ca_file is not None and not self.tls:
            raise ConfigError("mqtt.ca_file is set but tls = false")
        try:
            check_topic_prefix(self.topic_prefix)
        except ConfigError as exc:
            raise ConfigError(f"mqtt.topic_prefix: {exc}") from exc
        if self.min_wake_interval < 1:
            raise ConfigError("mqtt.min_wake_interval must be at least 1 second")
        if not 5 <= self.keepalive <= 65535:
            raise ConfigError("mqtt.keepalive must be between 5 seconds and 65535 seconds")
        if not 10 <= self.max_wake_age <= 86400:
            raise ConfigError("mqtt.max_wake_age must be between 10 seconds and 1 day")

    @property
    def broker_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls else 1883)

    def password(self) -> str | None:
        """The broker password from its file (None without one)."""
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read mqtt.password_file {self.password_file}: {exc}"
            ) from exc

    def missing_files(self) -> list[str]:
        files = {"mqtt.ca_file": self.ca_file, "mqtt.password_file": self.password_file}
        return [f"{k} ({p})" for k, p in files.items() if p is not None and not p.exists()]

    @classmethod
    def from_table(cls, table: Any, base: Path) -> MqttConfig:
        """From the ``[agent.mqtt]`` TOML table; paths relative to the config's directory."""
        if not isinstance(table, dict):
            raise ConfigError("mqtt must be a table ([agent.mqtt])")
        data = dict(table)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown mqtt settings {sorted(unknown)}")
        for key in ("ca_file", "password_file"):
            if key in data:
                if not isinstance(data[key], str) or not data[key]:
                    raise ConfigError(f"mqtt.{key}: expected a path")
                data[key] = (base / data[key]).resolve()
        for key in _DURATIONS:
            if key in data:
                data[key] = parse_duration(f"mqtt.{key}", data[key])
        if "topic_prefix" in data and not isinstance(data["topic_prefix"], str):
            raise ConfigError("mqtt.topic_prefix: expected a string")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"mqtt: {exc}") from exc

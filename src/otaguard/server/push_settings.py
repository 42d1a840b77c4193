"""The server's push settings: which MQTT broker wake-ups go to, and how to log in to it.

Why a module of its own: the settings come from a small TOML file (``otaguard server
--mqtt-config FILE``), so that the broker password stays in a file of its own (never on a
command line, where ``ps`` shows it) and every mistake in the file is one ``ConfigError``
naming the key before the server starts. Example (``packaging/server-mqtt.toml``)::

    [mqtt]
    host = "broker.example.com"
    port = 8883
    ca_file = "/etc/otaguard/broker-ca.pem"   # TLS; or tls = true for the system's CAs
    username = "otaguard-server"
    password_file = "/etc/otaguard/mqtt-password"
    topic_prefix = "otaguard/acme"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otaguard.director.wakeup import DEFAULT_PREFIX, check_topic_prefix
from otaguard.errors import ConfigError

_TYPES: dict[str, tuple[type, ...]] = {
    "host": (str,),
    "port": (int,),
    "tls": (bool,),
    "ca_file": (str,),
    "username": (str,),
    "password_file": (str,),
    "topic_prefix": (str,),
    "max_pending": (int,),
    "scheduled_check_seconds": (int, float),
}


@dataclass(frozen=True)
class PushSettings:
    """The broker the server publishes wake-ups to. The password comes from ``password_file``
    (never the command line); ``ca_file`` (implies TLS) or ``tls`` for the system's CAs."""

    host: str
    port: int | None = None
    tls: bool = False
    ca_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    topic_prefix: str = DEFAULT_PREFIX
    max_pending: int = 200_000
    scheduled_check_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("mqtt host must not be empty")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(f"mqtt port {self.port} is not a TCP port")
        if self.password_file is not None and self.username is None:
            raise ConfigError("an mqtt password file needs an mqtt user name")
        check_topic_prefix(self.topic_prefix)
        if self.max_pending < 1:
            raise ConfigError("mqtt max_pending must be at least 1")

    @property
    def use_tls(self) -> bool:
        return self.tls or self.ca_file is not None

    @property
    def broker_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.use_tls else 1883)

    def password(self) -> str | None:
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the mqtt password file: {exc}") from exc

    @classmethod
    def from_toml(cls, path: Path) -> PushSettings:
        """From the ``[mqtt]`` table of ``path``; relative paths are relative to its folder."""
        try:
            raw: dict[str, Any] = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read mqtt config {path}: {exc}") from exc
        table = raw.get("mqtt")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: missing [mqtt] table")
        unknown = sorted(set(table) - set(_TYPES))
        if unknown:
            raise ConfigError(f"{path}: unknown mqtt settings {unknown}")
        data: dict[str, Any] = {}
        for key, value in table.items():
            bad_bool = isinstance(value, bool) and bool not in _TYPES[key]
            if bad_bool or not isinstance(value, _TYPES[key]):
                raise ConfigError(f"{path}: mqtt.{key} has the wrong type ({value!r})")
            data[key] = (path.parent / str(value)).resolve() if key.endswith("_file") else value
        if "host" not in data:
            raise ConfigError(f"{path}: mqtt.host is required")
        try:
            settings = cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        missing = [
            str(p) for p in (settings.ca_file, settings.password_file) if p and not p.is_file()
        ]
        if missing:
            raise ConfigError(f"{path}: files not found: {', '.join(missing)}")
        return settings

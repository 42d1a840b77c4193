"""The agent config's values checked one by one, as pure functions: TOML values in, plain
values out, or a ``ConfigError`` that names the key and says what is expected.

An operator's mistake in ``agent.toml`` must end in one clear message at start, never in a
traceback halfway through a cycle: every key's type is checked here before the agent is built,
durations may be written as ``"10m"``, ``"90s"``, ``"2h"``, ``"1d"``, ``"500ms"`` or a number of
seconds, and the server URL must be ``https://`` unless ``insecure_http = true`` (for tests on
loopback only: the device credential would travel in clear text).
"""

from __future__ import annotations

import re
from typing import Any

from otaguard.agent.install_window import parse_windows
from otaguard.errors import ConfigError

DURATION_KEYS = (
    "cert_renew_retry",
    "cert_renew_retry_max",
    "health_timeout",
    "poll_interval",
    "cancel_check_seconds",
    "backoff_base",
    "backoff_max",
    "checkpoint_journal_seconds",
    "request_timeout",
    "health_report_window",
    "health_report_interval",
    "health_baseline_interval",
)
INT_KEYS = ("max_download_attempts", "max_download_requests", "checkpoint_bytes")
FLOAT_KEYS = ("cert_renew_fraction", "poll_jitter")
STRING_KEYS = ("device_id", "hardware", "server_url", "repository_url")
REQUIRED = (
    "device_id",
    "hardware",
    "server_url",
    "state_dir",
    "director_key_file",
    "trusted_root_file",
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(key: str, value: Any) -> float:
    """Seconds from a number or a string such as ``"10m"``; ``ConfigError`` naming ``key``."""
    if isinstance(value, bool):
        raise ConfigError(f'{key}: expected a duration such as 30, "90s" or "10m", not {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise ConfigError(
            f'{key}: expected a duration such as 30, "90s", "10m", "2h" or "1d", not {value!r}'
        )
    if seconds < 0:
        raise ConfigError(f"{key}: a duration cannot be negative ({value!r})")
    return seconds


def check_values(agent: dict[str, Any]) -> dict[str, Any]:
    """The ``[agent]`` table with durations in seconds, every typed key checked."""
    out = dict(agent)
    missing = [k for k in REQUIRED if k not in out]
    if missing:
        raise ConfigError(f"[agent] misses required settings: {', '.join(missing)}")
    for key in DURATION_KEYS:
        if key in out:
            out[key] = parse_duration(key, out[key])
    for key in INT_KEYS:
        if key in out and (isinstance(out[key], bool) or not isinstance(out[key], int)):
            raise ConfigError(f"{key}: expected a whole number, not {out[key]!r}")
    for key in FLOAT_KEYS:
        if key in out:
            if isinstance(out[key], bool) or not isinstance(out[key], int | float):
                raise ConfigError(f"{key}: expected a number, not {out[key]!r}")
            out[key] = float(out[key])
    for key in STRING_KEYS:
        if key in out and (not isinstance(out[key], str) or not out[key]):
            raise ConfigError(f"{key}: expected a non-empty string, not {out[key]!r}")
    for key in ("health_command", "health_probe_command"):
        command = out.get(key, [])
        if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            raise ConfigError(f"{key}: expected a list of strings, not {command!r}")
    if "maintenance_windows" in out:
        windows = out["maintenance_windows"]
        parse_windows("maintenance_windows", windows)  # names the key and every bad window
        out["maintenance_windows"] = [windows] if isinstance(windows, str) else list(windows)
    if not isinstance(out.get("insecure_http", False), bool):
        raise ConfigError("insecure_http: expected true or false")
    for key in ("server_url", "repository_url"):
        if key in out:
            check_url(key, out[key], insecure=out.get("insecure_http", False))
    return out


def check_url(key: str, url: str, *, insecure: bool) -> None:
    """``https://`` only; ``http://`` only with ``insecure_http = true`` (loopback tests)."""
    if url.startswith("https://"):
        return
    if url.startswith("http://"):
        if insecure:
            return
        raise ConfigError(
            f"{key}: {url} is plain http: the device's credential and reports would travel "
            "unencrypted; use https:// (insecure_http = true exists for loopback tests only)"
        )
    raise ConfigError(f"{key}: expected an https:// URL, not {url!r}")

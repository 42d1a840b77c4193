"""Structured logs for the agent: one JSON object per line, through the stdlib ``logging``.

Each line has ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg`` and any ``extra=`` fields
the call passed; exceptions add ``exc``. Secrets never reach the output: extra fields whose
names look secret (token, secret, password, credential, authorization, key material) are
replaced by ``"[redacted]"``, and bearer tokens inside messages are masked.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)
_SECRET_NAME = re.compile(r"secret|token|passw|credential|authori[sz]ation|private|api_?key", re.I)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
REDACTED = "[redacted]"


def scrub(text: str) -> str:
    return _BEARER.sub(r"\1" + REDACTED, text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            entry[key] = REDACTED if _SECRET_NAME.search(key) else _plain(value)
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, sort_keys=False, default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {
            str(k): REDACTED if _SECRET_NAME.search(str(k)) else _plain(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return scrub(str(value))


def setup_logging(level: str = "info", stream: TextIO | None = None) -> logging.Handler:
    """JSON lines on ``stream`` (stderr: journald keeps them) for the ``otaguard`` loggers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("otaguard")
    for old in list(root.handlers):
        if isinstance(old.formatter, JsonFormatter):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    return handler


@contextmanager
def json_logging(level: str = "info", stream: TextIO | None = None) -> Iterator[logging.Handler]:
    """``setup_logging`` for the duration of a command; the handler is removed afterwards."""
    handler = setup_logging(level, stream)
    try:
        yield handler
    finally:
        logging.getLogger("otaguard").removeHandler(handler)

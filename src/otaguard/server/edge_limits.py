"""Limits at the network edge, as plain values and pure bookkeeping (no sockets here).

A request's head (request line and header fields) is counted before the HTTP parser sees it, so
a client can make the server hold at most ``max_head_bytes`` of it, whatever it sends; the
connection protocol (``server/edge.py``) feeds the bytes and turns a verdict into 414 / 431 /
408 / 503. docs/SECURITY.md ("Limits") lists every value and the answer it gives.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import IntEnum

from otaguard.errors import OTAGuardError


@dataclass(frozen=True)
class EdgeLimits:
    """Per-listener limits; the defaults are what ``otaguard server`` runs with."""

    max_request_line: int = 8 << 10  # URL bytes (the request target): 414 past it
    max_head_bytes: int = 32 << 10  # request line + all header fields: 431 past it
    max_header_count: int = 100  # header fields: 431 past it
    head_timeout: float = 10.0  # connection (or next request) to end of head: 408 / close
    handshake_timeout: float = 10.0  # TCP connection to finished TLS handshake: close
    body_idle_timeout: float = 30.0  # longest wait for the next body bytes: 408 / close
    keep_alive_timeout: float = 15.0  # idle between requests: close
    max_connections_per_address: int = 256  # open TLS connections per client address: 503
    max_concurrency: int = 2048  # connections or requests in progress, in all: 503
    linger_seconds: float = 1.0  # after a refusal, input discarded this long, then close
    linger_bytes: int = 64 << 10  # ... or until this much was discarded


class Refusal(IntEnum):
    """Why a request is refused before it reaches the application (the HTTP status sent)."""

    URI_TOO_LONG = 414
    HEADERS_TOO_LARGE = 431
    TIMEOUT = 408
    BUSY = 503


class RefusedRequest(OTAGuardError):
    """Raised from a parser callback to stop parsing; carries the answer to send."""

    code = "refused_request"

    def __init__(self, refusal: Refusal, reason: str) -> None:
        super().__init__(reason)
        self.refusal = refusal
        self.reason = reason


class HeadBudget:
    """What one request's head has used so far; ``reset`` when the next request begins."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.reset()

    def reset(self) -> None:
        self.bytes = 0
        self.url_bytes = 0
        self.headers = 0

    def room(self) -> int:
        """How many more bytes of head may be handed to the parser."""
        return max(0, self.limits.max_head_bytes - self.bytes)

    def take(self, n: int) -> None:
        self.bytes += n

    def url(self, n: int) -> None:
        """Raises ``RefusedRequest`` (414) once the request target passes its limit."""
        self.url_bytes += n
        if self.url_bytes > self.limits.max_request_line:
            raise RefusedRequest(
                Refusal.URI_TOO_LONG,
                f"request target longer than {self.limits.max_request_line} bytes",
            )

    def header(self) -> None:
        """Raises ``RefusedRequest`` (431) past the header field count."""
        self.headers += 1
        if self.headers > self.limits.max_header_count:
            raise RefusedRequest(
                Refusal.HEADERS_TOO_LARGE,
                f"more than {self.limits.max_header_count} header fields",
            )

    def too_large(self) -> RefusedRequest:
        return RefusedRequest(
            Refusal.HEADERS_TOO_LARGE,
            f"request head larger than {self.limits.max_head_bytes} bytes",
        )


class AddressCounter:
    """Open connections per client address, for one listener (its event loop only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: Counter[str] = Counter()

    def acquire(self, address: str) -> bool:
        """Count a new connection from ``address``; ``False`` (not counted) if it is at the
        limit."""
        if self.open[address] >= self.limit:
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]

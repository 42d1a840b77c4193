"""Alert webhooks: each new alert POSTed as JSON to the configured URLs, signed, retried.

Signature: ``X-OTAGuard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
(the timestamp is signed with the body so a captured delivery cannot be replayed later; a
receiver checks the MAC with a constant-time comparison and refuses old timestamps). The secret
is read from a file the operator provides, never logged or put in a URL.

Delivery runs on a worker thread fed by a bounded queue: ``publish`` never blocks (a full queue
drops the oldest and counts it), so alerts can never slow check-ins. Each delivery is retried
with exponential backoff (``backoff`` * 2^n seconds, at most ``attempts`` times) on a network
error or a 5xx/429 answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-OTAGuard-Signature"


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, body: bytes, header: str, *, now: float, tolerance: float = 300) -> bool:
    """Does ``header`` sign ``body`` with ``secret``, within ``tolerance`` seconds of ``now``?
    (For receivers, and the tests.)"""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


class WebhookNotifier:
    """Pushes alerts to ``urls``; ``start`` the worker, ``close`` to stop it."""

    def __init__(
        self,
        urls: Sequence[str],
        secret: bytes,
        *,
        attempts: int = 5,
        backoff: float = 0.5,
        timeout: float = 5.0,
        on_result: Callable[[str], None] = lambda _outcome: None,
        max_queue: int = 1000,
    ) -> None:
        self.urls = list(urls)
        self._secret = secret
        self.attempts = attempts
        self.backoff = backoff
        self.on_result = on_result
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._client = httpx.Client(timeout=timeout)
        self._thread = threading.Thread(target=self._run, name="otaguard-webhooks", daemon=True)
        self._stopping = threading.Event()

    def start(self) -> WebhookNotifier:
        self._thread.start()
        return self

    def publish(self, payload: dict[str, Any]) -> None:
        """Queue one alert for delivery (never blocks)."""
        if not self.urls:
            return
        while True:
            try:
                self._queue.put_nowait(payload)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.on_result("dropped")
                except queue.Empty:
                    pass

    def close(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._client.close()

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            body = json.dumps(payload, sort_keys=True, default=str).encode()
            for url in self.urls:
                self.on_result(self._deliver(url, body))

    def _deliver(self, url: str, body: bytes) -> str:
        for attempt in range(self.attempts):
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self._secret, body, int(time.time())),
            }
            try:
                r = self._client.post(url, content=body, headers=headers)
                if r.status_code < 500 and r.status_code != 429:
                    return "delivered" if r.status_code < 300 else "refused"
            except httpx.HTTPError as exc:
                log.info(
                    "webhook delivery failed (attempt %d): %s", attempt + 1, type(exc).__name__
                )
            if self._stopping.wait(self.backoff * 2**attempt):
                return "abandoned"
        return "failed"

"""Refused requests: the audit rows they produce (aggregated per client address and window,
``identity/refusal_tally.py``), the failure limit on device authentication per address, and the
per-address tally of failed authentications the anomaly scan reads (``RefusalLog.bursts``:
every refused authentication, device or operator, API, console, login or enrollment, goes
through ``RefusalLog.failed``).

The rule (docs/SECURITY.md, "Refusals and rate limits"): the limit counts *failed*
authentications only. A request from a limited address is still checked first, and the
check is cheap (a SHA-256 comparison or a verified certificate, no argon2): a valid
credential is served; a failure is answered 429 instead of 401. The actor of a refusal is
the client address; a device id or user name the request claimed is recorded only as
``claimed`` (it is whatever the attacker typed).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from starlette.types import Scope

from otaguard.errors import AuthError, RateLimitedError
from otaguard.fleet.tally import WindowTally
from otaguard.fleet.traffic import auth_key
from otaguard.identity.ratelimit import FailureWindow
from otaguard.identity.refusal_tally import RefusalTally, Tally

AuditFn = Callable[..., Any]
#: failed device authentications per address per minute before 429
DEVICE_FAILURE_LIMIT = 50


def scope_client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RefusalLog:
    """Writes refusals to the audit log, one row per (action, address) per window plus a
    summary with the count; ``clock``: monotonic seconds (tests pass their own)."""

    def __init__(
        self,
        audit: AuditFn,
        *,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self.tally = RefusalTally(window_seconds=window_seconds)
        self.clock = clock
        #: failed authentications per (address, route) in time buckets, for the burst alert
        self.bursts = WindowTally()

    def failed(self, client: str, target: str) -> None:
        """Count one failed authentication from ``client`` on ``target`` ("METHOD /path")
        for the anomaly scan (memory only, bounded; no audit row: the caller writes that)."""
        self.bursts.add(auth_key(client, target), dt.datetime.now(dt.UTC))

    def refused(
        self, action: str, client: str, *, target: str, outcome: str, detail: dict[str, Any]
    ) -> None:
        """Audit a refused authentication (aggregated) and count it for the burst alert."""
        self.failed(client, target)
        sample = {"target": target, "outcome": outcome, **detail}
        first, closed = self.tally.refused(action, client, self.clock(), sample)
        for t in closed:
            self._summary(t)
        if first:
            self._audit(
                actor=f"client:{client}",
                action=action,
                target=target,
                outcome=outcome,
                detail={**detail, "client": client, "count": 1},
            )

    def flush(self) -> None:
        for t in self.tally.close_all():
            self._summary(t)

    def _summary(self, t: Tally) -> None:
        sample = dict(t.sample)
        target = str(sample.pop("target", ""))
        outcome = str(sample.pop("outcome", "refused"))
        self._audit(
            actor=f"client:{t.client}",
            action=t.kind,
            target=target,
            outcome=outcome,
            detail={
                **sample,
                "client": t.client,
                "count": t.count,  # the whole window's, its first included
                "summary": True,
                "seconds": round(t.last - t.first, 3),
            },
        )


class DeviceRefusals:
    """Failed device authentications per address (429 past the limit) and their audit."""

    def __init__(self, log: RefusalLog, *, limit: int = DEVICE_FAILURE_LIMIT) -> None:
        self.log = log
        self.failures = FailureWindow(limit=limit)

    def refuse(self, scope: Scope, exc: AuthError, claimed: str | None) -> AuthError:
        """Count a refused device request; returns the error to answer with (``exc``, or a
        ``RateLimitedError`` once the address is over the limit)."""
        client = scope_client(scope)
        now = self.log.clock()
        target = f"{scope.get('method', '')} {scope.get('path', '')}"
        detail = {"reason": str(exc)[:200], "claimed": (claimed or "")[:128]}
        if self.failures.blocked(client, now):
            self.log.refused(
                "device.auth.rate_limited",
                client,
                target=target,
                outcome="rate_limited",
                detail=detail,
            )
            return RateLimitedError(
                "too many failed device authentications from this address; try later"
            )
        self.failures.failure(client, now)
        self.log.refused(
            "device.auth.refused", client, target=target, outcome=exc.code, detail=detail
        )
        return exc

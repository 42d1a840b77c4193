"""Password login, shared by the API (``POST /api/v1/auth/login``) and the web console.

One code path so both have the same defences: the client address is rate-limited
(``identity/ratelimit.py``), the account is locked after repeated failures and the password is
checked with argon2id (``IdentityStore.login``), and every attempt is audited and counted.
"""

from __future__ import annotations

import datetime as dt
import time

from otaguard.errors import AuthError, LoginBusyError, RateLimitedError
from otaguard.identity.ratelimit import FailureWindow
from otaguard.identity.store import LOGIN_TOKEN_TTL, IssuedToken
from otaguard.server.context import ServerContext
from otaguard.server.metrics import ServerMetrics

#: the route a login came through, as the auth-failure alert names it
LOGIN_ROUTES = {"api": "POST /api/v1/auth/login", "console": "POST /console/login"}


def password_login(
    ctx: ServerContext,
    metrics: ServerMetrics,
    failures: FailureWindow,
    *,
    client: str,
    username: str,
    password: str,
    scopes: list[str] | None = None,
    ttl: dt.timedelta = LOGIN_TOKEN_TTL,
    via: str = "api",
) -> IssuedToken:
    """Check ``username``'s password and issue a token that expires after ``ttl``.

    Raises:
        RateLimitedError: too many failures from ``client`` lately (retry later).
        AuthError: wrong name or password, or the account is locked (not retried).
        LoginBusyError: too many password checks in progress (audited aggregated per address
            and window; retry shortly).
    """
    if failures.blocked(client, time.monotonic()):
        metrics.auth_failures.labels("login").inc()
        ctx.refusals.failed(client, LOGIN_ROUTES.get(via, f"login ({via})"))
        raise RateLimitedError("too many failed attempts from this address; try later")
    try:
        issued = ctx.identity.login(username, password, client=client, scopes=scopes, ttl=ttl)
    except LoginBusyError:  # nothing was checked: not a failure of this address
        metrics.auth_failures.labels("login_busy").inc()
        ctx.refusals.refused(
            "auth.login.busy", client, target=username, outcome="login_busy", detail={"via": via}
        )
        raise
    except AuthError as exc:
        metrics.auth_failures.labels("login").inc()
        failures.failure(client, time.monotonic())
        ctx.refusals.failed(client, LOGIN_ROUTES.get(via, f"login ({via})"))
        ctx.identity.audit(  # the actor is the address: the name is only what it claimed
            actor=f"client:{client}",
            action="auth.login",
            target=username,
            outcome="failed",
            detail={"reason": str(exc), "client": client, "claimed": username, "via": via},
        )
        raise
    ctx.identity.audit(
        actor=f"user:{username}",
        action="auth.login",
        target=username,
        detail={"token": issued.id, "client": client, "via": via},
    )
    return issued

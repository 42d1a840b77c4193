"""Who is using the console: the session cookie, CSRF tokens, and the per-request check.

A console session *is* an operator token issued by the same password login as the API
(``server/login.py``): the cookie holds the token, the database holds only its SHA-256 and its
expiry, so every server process sees the session, logout revokes it, and expiry is enforced by
``IdentityStore.authenticate`` exactly as for the API. Each request is then authorized by the
API's own policy (``rbac.request_action`` over ``ROUTE_ACTIONS``, ``Principal.decide``) and
marked for ``AuditMiddleware``, so a console action is audited like its API twin.

CSRF: every state-changing form carries ``HMAC-SHA256(session token, "csrf")``. A page of
another site can neither read the HttpOnly cookie nor compute the HMAC, the cookie is
``SameSite=Strict`` besides, and the form value reveals nothing about the token. The login form,
which has no session yet, uses a double-submit cookie.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from otaguard.errors import AuthError, ForbiddenError, RateLimitedError
from otaguard.identity.rbac import Action, Principal, request_action
from otaguard.server.auth import audit_detail, client_address, refuse_operator
from otaguard.server.state import context_of, failures_of, metrics_of

#: ``__Host-``: the browser keeps it only if Secure, host-only and for path ``/``
SESSION_COOKIE = "__Host-otaguard-session"
LOGIN_COOKIE = "__Host-otaguard-login"
CSRF_FIELD = "csrf"
#: a console session lasts a working day; logging in again is cheap
SESSION_TTL = dt.timedelta(hours=8)
SAFE_METHODS = frozenset({"GET", "HEAD"})


class LoginRequired(AuthError):
    """No session, or one that is no longer valid: the browser goes to the login page."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.expired = expired


class CsrfError(ForbiddenError):
    code = "csrf"


def csrf_token(session_token: str) -> str:
    """The CSRF value of the forms of one session (derived, so nothing is stored)."""
    return hmac.new(session_token.encode(), b"otaguard-console-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_token: str, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(csrf_token(session_token), str(submitted))


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def cookie_header(name: str, value: str, *, max_age: int) -> str:
    """A ``Set-Cookie`` value with every attribute the console requires (``max_age`` 0
    deletes the cookie)."""
    return f"{name}={value}; Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=Strict"


def safe_next(target: str | None) -> str:
    """Where to go after login: a console path only (never another site)."""
    if target and target.startswith("/console/") and "//" not in target and "\\" not in target:
        return target
    return "/console/"


def login_url(path: str) -> str:
    return "/console/login?next=" + quote(safe_next(path), safe="/")


def _authenticate(request: Request, token: str) -> Principal:
    ctx = context_of(request)
    try:
        return ctx.identity.authenticate(token)
    except AuthError as exc:
        refuse_operator(request, exc)
        raise LoginRequired(str(exc), expired=True) from None


def _authorize(request: Request, principal: Principal) -> Action:
    method, path = request.method, request.url.path
    action = request_action(method, path)
    if not isinstance(action, Action):
        raise refuse_operator(
            request, ForbiddenError(f"no access policy for {method} {path}"), principal.name
        )
    decision = principal.decide(action)
    if not decision.allowed:
        raise refuse_operator(request, ForbiddenError(decision.reason), f"user:{principal.name}")
    return action


async def console_user(request: Request) -> Principal:
    """The dependency of every console page and action: the session's operator, allowed to
    do this route's action; for a change, with the session's CSRF token in the form."""
    if failures_of(request).blocked(client_address(request), time.monotonic()):
        metrics_of(request).auth_failures.labels("management").inc()
        raise RateLimitedError("too many failed attempts from this address; try later")
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired("please log in")
    principal = await run_in_threadpool(_authenticate, request, token)
    request.state.console_principal = principal  # for the page layout, even on a refusal
    request.state.console_csrf = csrf_token(token)
    if request.method not in SAFE_METHODS:
        form = await request.form()
        submitted = form.get(CSRF_FIELD)
        if not csrf_ok(token, submitted if isinstance(submitted, str) else None):
            exc = CsrfError("the form's security token is missing or wrong; reload the page")
            await run_in_threadpool(refuse_operator, request, exc, f"user:{principal.name}")
            raise exc
    action = await run_in_threadpool(_authorize, request, principal)
    request.state.otaguard_principal = principal
    request.state.otaguard_action = action.value
    audit_detail(request, via="console")
    return principal


ConsoleUser = Annotated[Principal, Depends(console_user)]

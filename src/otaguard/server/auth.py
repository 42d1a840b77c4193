"""Authentication and authorization of requests: FastAPI dependencies that turn a request into
the operator or the device it comes from, counting and auditing every refusal.

Operators: ``Authorization: Bearer <token>`` (a scoped, expiring API token, or the server's
bootstrap admin token); the action is the route's entry in ``identity.rbac.ROUTE_ACTIONS`` and
the pure ``rbac.decide`` says yes or no. A route without an entry is refused (fail closed).
Every operator request that changes something is written to the audit log by
``AuditMiddleware`` once its response status is known.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otaguard.errors import AuthError, ForbiddenError, RateLimitedError
from otaguard.identity.rbac import Access, Action, Principal, request_action
from otaguard.server.context import ServerContext
from otaguard.server.device_identity import certificate_device, scope_header
from otaguard.server.metrics import ServerMetrics
from otaguard.server.state import context_of, failures_of, metrics_of

BEARER = "Bearer "
#: keys under the request's ``scope["state"]``
PRINCIPAL_KEY = "otaguard_principal"
ACTION_KEY = "otaguard_action"
#: extra, non-secret facts a handler adds to its request's audit entry (``audit_detail``)
DETAIL_KEY = "otaguard_audit_detail"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization or not authorization.startswith(BEARER):
        return None
    return authorization.removeprefix(BEARER).strip() or None


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def route_of(request: Request) -> tuple[str, str]:
    return request.method, request.url.path


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the application serves, HEAD left out, through included
    routers (FastAPI >= 0.13x keeps them nested; older versions flatten ``app.routes``)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI: routes are flat
        items = [(getattr(r, "path", None), getattr(r, "methods", None)) for r in app.routes]
    else:
        items = [
            (rc.path, getattr(rc.original_route, "methods", None))
            for rc in iter_route_contexts(app.routes)
        ]
    return [
        (m, str(path))
        for path, methods in items
        if path and methods
        for m in sorted(methods)
        if m != "HEAD"
    ]


def refuse_operator(request: Request, exc: AuthError, actor: str = "anonymous") -> AuthError:
    """Count, audit and (unless the caller was known but not allowed) remember a refused
    operator request; returns ``exc`` for the caller to raise."""
    ctx = context_of(request)
    metrics_of(request).auth_failures.labels("management").inc()
    method, path = route_of(request)
    ctx.identity.audit(
        actor=actor,
        action="auth.refused",
        target=f"{method} {path}",
        outcome=exc.code,
        detail={"reason": str(exc), "client": client_address(request)},
    )
    if not isinstance(exc, ForbiddenError):
        failures_of(request).failure(client_address(request), time.monotonic())
        ctx.refusals.failed(client_address(request), f"{method} {path}")
    return exc


def operator(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The dependency authenticating and authorizing an operator; returns the operator's name
    (the principal is kept in ``request.state`` for handlers that need roles). A valid token
    is served even from a rate-limited address (the check is one hash lookup); a failure
    from one is answered 429, audited once per address and window."""
    ctx = context_of(request)
    token = bearer_token(authorization)
    try:
        if token is None:
            raise AuthError("missing bearer API token")
        principal = ctx.identity.authenticate(token)
    except AuthError as exc:
        client = client_address(request)
        if failures_of(request).blocked(client, time.monotonic()):
            raise rate_limited(request, "auth.rate_limited") from None
        raise refuse_operator(request, exc) from None
    method, path = route_of(request)
    action = request_action(method, path)
    if not isinstance(action, Action):
        raise refuse_operator(
            request, ForbiddenError(f"no access policy for {method} {path}"), principal.name
        )
    decision = principal.decide(action)
    if not decision.allowed:
        raise refuse_operator(request, ForbiddenError(decision.reason), f"user:{principal.name}")
    request.state.otaguard_principal = principal
    request.state.otaguard_action = action.value
    return principal.name


def rate_limited(request: Request, action: str, label: str = "management") -> RateLimitedError:
    """Count and audit (aggregated per address and window) a 429."""
    metrics_of(request).auth_failures.labels(label).inc()
    method, path = route_of(request)
    context_of(request).refusals.refused(
        action,
        client_address(request),
        target=f"{method} {path}",
        outcome="rate_limited",
        detail={},
    )
    return RateLimitedError("too many failed attempts from this address; try later")


def principal_of(request: Request) -> Principal:
    principal = getattr(request.state, PRINCIPAL_KEY, None)
    if not isinstance(principal, Principal):
        raise AuthError("not authenticated")
    return principal


@dataclass(frozen=True)
class DeviceClaim:
    """Who a device request says it comes from: proven by a client certificate
    (``credential`` None), or still to be checked against the stored bearer credential."""

    device_id: str
    credential: str | None


def identify_device(ctx: ServerContext, scope: Scope) -> DeviceClaim:
    """The device a request comes from: its verified client certificate (mTLS, or a trusted
    proxy's header) first, else, when the server allows it, ``X-OTAGuard-Device`` with a
    bearer credential. Raises ``AuthError`` when neither is acceptable."""
    claimed = scope_header(scope, "x-otaguard-device")
    who = certificate_device(ctx, scope)  # see server/device_identity.py
    if who is not None:
        if claimed not in (None, who.device_id):
            raise AuthError("X-OTAGuard-Device differs from the client certificate")
        return DeviceClaim(who.device_id, None)
    if not ctx.settings.device_bearer_fallback:
        raise AuthError("device requests need a client certificate")
    token = bearer_token(scope_header(scope, "authorization"))
    if token is None or not claimed:
        raise AuthError("device requests need X-OTAGuard-Device and a bearer credential")
    return DeviceClaim(claimed, token)


def refuse_device(
    ctx: ServerContext, metrics: ServerMetrics, scope: Scope, exc: AuthError
) -> AuthError:
    """Count and audit (aggregated per address: ``server/refusals.py``) a refused device
    request; returns the error to raise: ``exc``, or ``RateLimitedError`` once the address
    has failed too often."""
    metrics.auth_failures.labels("device").inc()
    return ctx.device_refusals.refuse(scope, exc, scope_header(scope, "x-otaguard-device"))


def device(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_otaguard_device: Annotated[str | None, Header()] = None,
) -> str:
    """The dependency authenticating a device; returns the device id. (The check-in, the
    hot path, authenticates in its batch instead: server/checkin.py.)"""
    # The header parameters are read from the scope; declared here for the OpenAPI text.
    del authorization, x_otaguard_device
    ctx = context_of(request)
    try:
        claim = identify_device(ctx, request.scope)
        if claim.credential is not None:
            ctx.store.authenticate_device(claim.device_id, claim.credential)
    except AuthError as exc:
        raise refuse_device(ctx, metrics_of(request), request.scope, exc) from None
    return claim.device_id


async def device_claim(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_otaguard_device: Annotated[str | None, Header()] = None,
) -> DeviceClaim:
    """Who a check-in says it comes from (the credential itself is checked in the
    check-in's transaction); refused before the body is looked at, as on the lean path."""
    del authorization, x_otaguard_device  # read from the scope; declared for OpenAPI
    ctx = context_of(request)
    try:
        return identify_device(ctx, request.scope)
    except AuthError as exc:
        raise await run_in_threadpool(
            refuse_device, ctx, metrics_of(request), request.scope, exc
        ) from None


def audit_detail(request: Request, **detail: Any) -> None:
    """Add facts (never secrets) to the audit entry ``AuditMiddleware`` writes for this
    operator request."""
    state = request.scope.setdefault("state", {})
    state.setdefault(DETAIL_KEY, {}).update(detail)


class AuditMiddleware:
    """Writes an audit entry for every authenticated operator request that is not a read,
    once the handler produced its status, before the response goes out."""

    def __init__(self, app: ASGIApp, ctx: ServerContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # shared with the handlers, even through scope copies

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state: dict[str, Any] = scope["state"]
                principal = state.get(PRINCIPAL_KEY)
                if isinstance(principal, Principal):
                    status = int(message["status"])
                    await run_in_threadpool(
                        self.ctx.identity.audit,
                        actor=f"user:{principal.name}",
                        action=str(state.get(ACTION_KEY, "unknown")),
                        target=f"{scope['method']} {scope['path']}",
                        outcome="ok" if status < 400 else f"http_{status}",
                        detail={
                            **state.get(DETAIL_KEY, {}),
                            "status": status,
                            "token": principal.token_id,
                        },
                    )
            await send(message)

        await self.app(scope, receive, audited_send)


__all__ = [
    "Access",
    "AuditMiddleware",
    "DeviceClaim",
    "audit_detail",
    "device",
    "device_claim",
    "identify_device",
    "operator",
    "rate_limited",
    "refuse_device",
]

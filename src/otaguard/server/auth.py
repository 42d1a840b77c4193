"""Authentication (and, later, authorization) of requests: FastAPI dependencies that turn a
request into the operator or the device it comes from, counting every refusal.

``operator_dependency`` guards the management API, ``device_dependency`` the device API; the
routes in ``server/app.py`` only name the dependency they need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Header

from otaguard.errors import AuthError
from otaguard.server.context import ServerContext
from otaguard.server.metrics import ServerMetrics

BEARER = "Bearer "


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization or not authorization.startswith(BEARER):
        return None
    return authorization.removeprefix(BEARER).strip() or None


def operator_dependency(ctx: ServerContext, metrics: ServerMetrics) -> Callable[..., str]:
    """The dependency authenticating an operator by API token; returns the operator's name."""

    def operator(authorization: Annotated[str | None, Header()] = None) -> str:
        token = bearer_token(authorization)
        if token is None:
            metrics.auth_failures.labels("management").inc()
            raise AuthError("missing bearer API token")
        try:
            return ctx.store.check_api_token(token)
        except AuthError:
            metrics.auth_failures.labels("management").inc()
            raise

    return operator


def device_dependency(ctx: ServerContext, metrics: ServerMetrics) -> Callable[..., str]:
    """The dependency authenticating a device; returns the device id."""

    def device(
        authorization: Annotated[str | None, Header()] = None,
        x_otaguard_device: Annotated[str | None, Header()] = None,
    ) -> str:
        token = bearer_token(authorization)
        if token is None or not x_otaguard_device:
            metrics.auth_failures.labels("device").inc()
            raise AuthError("device requests need X-OTAGuard-Device and a bearer credential")
        try:
            ctx.store.authenticate_device(x_otaguard_device, token)
        except AuthError:
            metrics.auth_failures.labels("device").inc()
            raise
        return x_otaguard_device

    return device

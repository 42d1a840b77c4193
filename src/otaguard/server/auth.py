"""Operator authentication for the management API: a FastAPI dependency that turns the
``Authorization: Bearer`` header into the name of an authenticated operator."""

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
    """The dependency authenticating an operator by API token; counts every refusal."""

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

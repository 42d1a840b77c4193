"""What the application keeps in ``app.state`` and the dependencies that read it back.

Route handlers are plain module-level functions (``server/routes/``); they get the server
context, the metrics and the failure window of their own application through these
dependencies rather than from a closure, so one handler serves any application built by
``create_app`` (tests build many).
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from otaguard.identity.ratelimit import FailureWindow
from otaguard.server.context import ServerContext
from otaguard.server.metrics import ServerMetrics


def context_of(request: Request) -> ServerContext:
    return cast(ServerContext, request.app.state.ctx)


def metrics_of(request: Request) -> ServerMetrics:
    return cast(ServerMetrics, request.app.state.metrics)


def failures_of(request: Request) -> FailureWindow:
    """Failed operator authentications per client address (login and bearer tokens)."""
    return cast(FailureWindow, request.app.state.auth_failures)


# Async: FastAPI runs them on the event loop instead of sending each to a worker thread.
async def get_context(request: Request) -> ServerContext:
    return context_of(request)


async def get_metrics(request: Request) -> ServerMetrics:
    return metrics_of(request)


Ctx = Annotated[ServerContext, Depends(get_context)]
Metrics = Annotated[ServerMetrics, Depends(get_metrics)]

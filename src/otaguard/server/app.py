"""The ASGI application: device API, management API, TUF repository, metrics.

``create_app`` only assembles: the routers of ``server/routes/`` (plain module-level handlers
that find the server context in ``app.state``, see ``server/state.py``), the middleware (body
limit, audit log), the error handlers, and the lean check-in layer in front of it all.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from otaguard import __version__
from otaguard.errors import OTAGuardError
from otaguard.identity.ratelimit import FailureWindow
from otaguard.server import checkin as checkin_flow
from otaguard.server import schemas
from otaguard.server.auth import AuditMiddleware
from otaguard.server.console import install_console
from otaguard.server.context import ServerContext
from otaguard.server.head import HeadAsGet
from otaguard.server.http_errors import error_status, install_error_handlers
from otaguard.server.limits import BodyLimit
from otaguard.server.metrics import ServerMetrics
from otaguard.server.monitor import run_monitor
from otaguard.server.push import MqttPush, NoPush
from otaguard.server.routes import ROUTERS
from otaguard.server.routes.repository import STREAMED_BODIES
from otaguard.server.transfers import flush as flush_transfers
from otaguard.server.transfers import keep_flushing
from otaguard.server.webhooks import WebhookNotifier

TIMESTAMP_REFRESH_SECONDS = 600.0
#: largest JSON request body (uploads and metadata have their own, larger limits)
MAX_JSON_BODY_BYTES = 1 << 20


class OTAGuardApp(FastAPI):
    """The FastAPI application with the device check-in (the hot path) answered in front of
    its middleware stack by ``server/checkin.py``."""

    checkin_endpoint: checkin_flow.CheckinEndpoint | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.checkin_endpoint
        if endpoint is not None and endpoint.handles(scope):
            await endpoint(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """The document, with the check-in body's schema (that route reads its body itself,
        as the lean layer does, so FastAPI does not list the model on its own)."""
        if self.openapi_schema is None:
            doc = super().openapi()
            body = schemas.CheckIn.model_json_schema(ref_template="#/components/schemas/{model}")
            known = doc.setdefault("components", {}).setdefault("schemas", {})
            for name, sub in body.pop("$defs", {}).items():
                known.setdefault(name, sub)
            known.setdefault("CheckIn", body)
        return self.openapi_schema or {}


async def _keep_fresh(ctx: ServerContext) -> None:
    """Re-sign snapshot and timestamp before they expire, for as long as the server runs."""
    while True:
        with contextlib.suppress(OTAGuardError):
            await run_in_threadpool(ctx.repo.refresh_online_roles)
        await asyncio.sleep(TIMESTAMP_REFRESH_SECONDS)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    ctx = app.state.ctx
    notifier = _webhooks(ctx, app.state.metrics)
    push = _push(ctx, app.state.metrics)
    task = asyncio.create_task(_keep_fresh(ctx))
    monitor = asyncio.create_task(run_monitor(ctx, app.state.metrics, notifier))
    transfers = asyncio.create_task(keep_flushing(ctx, app.state.metrics))
    try:
        yield
    finally:
        task.cancel()
        monitor.cancel()
        transfers.cancel()
        with contextlib.suppress(Exception):
            await run_in_threadpool(flush_transfers, ctx, app.state.metrics)
        if notifier is not None:
            await run_in_threadpool(notifier.close)
        if push is not None:
            ctx.push = NoPush()
            await run_in_threadpool(push.close)
        await run_in_threadpool(app.state.checkin_batcher.close)


def _webhooks(ctx: ServerContext, metrics: ServerMetrics) -> WebhookNotifier | None:
    """The alert webhooks, when URLs and a secret file are configured."""
    settings = ctx.settings
    if not settings.webhook_urls or settings.webhook_secret_file is None:
        return None
    secret = settings.webhook_secret_file.read_bytes().strip()
    on_result = metrics.webhook_deliveries.labels
    return WebhookNotifier(
        settings.webhook_urls, secret, on_result=lambda outcome: on_result(outcome).inc()
    ).start()


def _push(ctx: ServerContext, metrics: ServerMetrics) -> MqttPush | None:
    """The MQTT wake-up publisher, when a broker is configured (it connects in the
    background: a broker that is down delays nothing here)."""
    settings = ctx.settings.mqtt
    if settings is None:
        return None
    outcomes = metrics.push_wakeups.labels
    push = MqttPush(
        settings,
        ctx.director,
        ctx.store.wakeups,
        on_outcome=lambda outcome: outcomes(outcome).inc(),
        on_broker_error=metrics.push_broker_errors.inc,
        on_connected=lambda up: metrics.push_connected.set(1 if up else 0),
    ).start()
    ctx.push = push
    return push


def _install_checkin(app: OTAGuardApp, ctx: ServerContext, metrics: ServerMetrics) -> None:
    """The check-in group commit, and the lean layer answering check-ins ahead of the app."""
    batcher = checkin_flow.CheckinBatcher(
        lambda requests, wait: ctx.store.check_in_many(requests, wait=wait),
        inline=ctx is not None and ctx.store.is_sqlite,  # None: OpenAPI document only
        on_batch=metrics.checkin_batch.observe,
    )
    app.state.checkin_batcher = batcher
    app.checkin_endpoint = checkin_flow.CheckinEndpoint(
        ctx=ctx,
        metrics=metrics,
        batcher=batcher,
        error_status=error_status,
        max_body=MAX_JSON_BODY_BYTES,
    )


def create_app(ctx: ServerContext) -> OTAGuardApp:
    app = OTAGuardApp(
        title="OTAGuard",
        version=__version__,
        lifespan=_lifespan,
        description="Secure OTA updates: device API, management API and TUF repository.",
        docs_url=None,  # served by routes/api_docs.py from local assets, never a CDN
        redoc_url=None,
    )
    metrics = ServerMetrics()
    app.state.ctx = ctx
    app.state.metrics = metrics
    app.state.auth_failures = FailureWindow()  # failed operator authentications per address
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=MAX_JSON_BODY_BYTES, exempt=STREAMED_BODIES)
    _install_checkin(app, ctx, metrics)
    for router in ROUTERS:
        app.include_router(router)
    install_console(app)
    app.add_middleware(AuditMiddleware, ctx=ctx)
    app.add_middleware(HeadAsGet)  # outermost: routing and policy see a GET
    return app

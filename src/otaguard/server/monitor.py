"""The server's periodic fleet work, off the check-in hot path: evaluate running rollouts
(``server/evaluator.py``), scan the last window's signals for anomalies (``fleet.anomaly``:
the database's, the check-in batches' downgrade and replay observations, and the in-memory
tallies of failed authentications per address and downloads per device),
store new alerts (deduplicated by key), count them, export per-phase rollout gauges and push
new alerts to the webhooks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from otaguard.errors import OTAGuardError
from otaguard.fleet.anomaly import scan
from otaguard.fleet.tally import Bucket
from otaguard.server.context import ServerContext
from otaguard.server.evaluator import evaluate_all
from otaguard.server.metrics import ServerMetrics
from otaguard.server.webhooks import WebhookNotifier
from otaguard.store import signals
from otaguard.store.base import utcnow
from otaguard.store.monitoring import AlertView

log = logging.getLogger(__name__)


def scan_once(
    ctx: ServerContext,
    metrics: ServerMetrics,
    notifier: WebhookNotifier | None,
    since: dt.datetime,
) -> list[AlertView]:
    """One anomaly scan of the window from ``since``; returns the alerts raised for the first
    time (counted and pushed)."""
    observed = ctx.store.checkins.observed
    manifests = [observed.popleft() for _ in range(len(observed))]
    policy = ctx.settings.anomaly
    found = signals.gather(
        ctx.store,
        since,
        downgrades=manifests,
        factory_versions=ctx.settings.factory_versions,
        auth_buckets=ctx.refusals.bursts.read(utcnow() - policy.auth_window),
        download_buckets=download_buckets(ctx, since),
    )
    metrics.tally_dropped.labels("auth_failures").set(ctx.refusals.bursts.dropped)
    metrics.tally_dropped.labels("downloads").set(ctx.downloads.dropped)
    new = ctx.store.monitoring.raise_alerts(scan(found, utcnow(), policy))
    for alert in new:
        metrics.alerts.labels(alert.kind).inc()
        if notifier is not None:
            notifier.publish({"alert": alert.__dict__})
    return new


def download_buckets(ctx: ServerContext, since: dt.datetime) -> list[Bucket]:
    """The download tally's buckets, at most every ``download_scan_seconds`` (none between
    reads: the volume alerts already raised stay stored)."""
    now = time.monotonic()
    if now - ctx.downloads_read_at < ctx.settings.download_scan_seconds:
        return []
    ctx.downloads_read_at = now
    return ctx.downloads.read(since)


def export_rollouts(ctx: ServerContext, metrics: ServerMetrics) -> None:
    """Per running rollout and phase, its devices by status, as gauges."""
    for deployment_id in ctx.store.rollouts.pending_ids():
        view = ctx.store.rollouts.view(deployment_id)
        for phase in view["phases"]:
            for status, n in phase["counts"].items():
                metrics.rollout_targets.labels(str(deployment_id), phase["name"], status).set(n)


def monitor_once(
    ctx: ServerContext,
    metrics: ServerMetrics,
    notifier: WebhookNotifier | None,
    since: dt.datetime,
) -> None:
    evaluate_all(ctx)
    export_rollouts(ctx, metrics)
    scan_once(ctx, metrics, notifier, since)


async def run_monitor(
    ctx: ServerContext, metrics: ServerMetrics, notifier: WebhookNotifier | None
) -> None:
    """Every ``rollout_interval`` seconds, for as long as the server runs; each scan looks
    at the ``anomaly_window_seconds`` before it (alerts are deduplicated, so overlap is fine)."""
    interval = ctx.settings.rollout_interval
    window = dt.timedelta(seconds=ctx.settings.anomaly_window_seconds)
    while True:
        try:
            await run_in_threadpool(monitor_once, ctx, metrics, notifier, utcnow() - window)
        except (OTAGuardError, SQLAlchemyError) as exc:  # the next pass tries again
            log.warning("monitoring pass failed: %s", exc)
        await asyncio.sleep(interval)

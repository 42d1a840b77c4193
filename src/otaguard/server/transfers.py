"""Counting the bytes each device downloads for its assignment, cheaply.

The target route (``/tuf/targets/``) is the server's heaviest traffic, so it only identifies
the device the way device requests are identified (client certificate, else the claimed id
with its bearer credential, hashed: no database access) and adds the bytes to an in-memory
tally. A background task (and shutdown) hands the tally to ``store/transfers.py``, which checks
the credentials and adds the bytes to the deployment targets in one transaction. Figures are
of what the server sent (response length), not what the device kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from otaguard.errors import AuthError, OTAGuardError, RepositoryError
from otaguard.repo.delta_targets import is_delta_target, parse_delta_target
from otaguard.repo.images import sha256_of
from otaguard.repo.online import OnlineRepository
from otaguard.server.auth import identify_device
from otaguard.server.context import ServerContext
from otaguard.server.metrics import ServerMetrics
from otaguard.store.credentials import secret_hash

FLUSH_SECONDS = 5.0
log = logging.getLogger(__name__)


def target_name_of(path: str) -> str:
    """The target name in a consistent-snapshot path ``dir/<sha256>.<name>``."""
    head, _, base = path.rpartition("/")
    name = base.split(".", 1)[1] if "." in base else base
    return f"{head}/{name}" if head else name


def note_download(ctx: ServerContext, scope: Scope, path: str, digest: str, nbytes: int) -> None:
    """Tally ``nbytes`` of target ``path`` served on a device's request (anonymous requests,
    and ones whose identity does not hold, are not counted)."""
    if nbytes <= 0 or not any(k == b"x-otaguard-device" for k, _v in scope.get("headers", ())):
        return
    try:
        claim = identify_device(ctx, scope)
    except AuthError:
        return
    credential = None if claim.credential is None else secret_hash(claim.credential)
    ctx.transfer_tally.add((claim.device_id, credential, target_name_of(path), digest), nbytes)


def resolver(repo: OnlineRepository) -> Callable[[str, str], tuple[str, bool] | None]:
    """``store.transfers.Resolver`` over the published repository."""

    def resolve(name: str, digest: str) -> tuple[str, bool] | None:
        try:
            target = repo.find_target(name)
            if target is None or sha256_of(target) != digest:
                return None
            if is_delta_target(target):
                return parse_delta_target(target).target_path, True
        except (RepositoryError, OTAGuardError):
            return None
        return name, False

    return resolve


def flush(ctx: ServerContext, metrics: ServerMetrics) -> set[int]:
    """Record the tally in the database; update the deployments' bytes gauges."""
    served = ctx.transfer_tally.take()
    if not served:
        return set()
    try:
        changed = ctx.store.transfers.record(served, resolver(ctx.repo))
    except Exception:
        ctx.transfer_tally.restore(served)  # counted at the next flush
        raise
    for dep, summary in ctx.store.transfers.summaries(changed).items():
        metrics.deployment_bytes_sent.labels(str(dep)).set(summary.bytes_sent)
        metrics.deployment_delta_bytes.labels(str(dep)).set(summary.delta_bytes)
        metrics.deployment_full_bytes.labels(str(dep)).set(summary.full_bytes)
    return changed


async def keep_flushing(ctx: ServerContext, metrics: ServerMetrics) -> None:
    """Flush every ``FLUSH_SECONDS`` for as long as the server runs."""
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        try:
            await run_in_threadpool(flush, ctx, metrics)
        except Exception as exc:  # a database hiccup: kept for the next round
            log.warning("could not record served bytes: %s", exc)

"""The operator's controls of a running deployment and of alerts, written once.

Why a module of its own: the API routes (``routes/rollouts.py``, ``routes/monitoring.py``,
``routes/identity.py``) and the web console's forms (``console/rollout_routes.py``) do the same
things; both call these functions, so a console button changes the rollout, evaluates it,
wakes the devices concerned (push hooks) and adds the same facts to the audit entry as its API
twin (``AuditMiddleware`` writes the entry
for either, under the route's RBAC action). Thin: the rules live in ``fleet.progress`` and the
store; this only sequences the calls.
"""

from __future__ import annotations

from fastapi import Request

from otaguard.identity.rbac import Principal
from otaguard.server.auth import audit_detail
from otaguard.server.context import ServerContext
from otaguard.server.evaluator import evaluate_one
from otaguard.store.monitoring import AlertView


def pause(ctx: ServerContext, request: Request, deployment_id: int, user: str, note: str) -> None:
    """Stop offering the release to devices that have not started (those updating go on)."""
    ctx.store.rollouts.pause(deployment_id, note or f"paused by {user}")
    audit_detail(request, deployment=deployment_id, note=note)


def resume(ctx: ServerContext, request: Request, deployment_id: int, note: str) -> None:
    """Resume a paused rollout (outcomes seen so far are acknowledged) and evaluate it now."""
    ctx.store.rollouts.resume(deployment_id)
    audit_detail(request, deployment=deployment_id, note=note)
    evaluate_one(ctx, deployment_id)
    ctx.push.deployment(deployment_id)  # admitted devices not yet started: offered again


def abort(ctx: ServerContext, request: Request, deployment_id: int, user: str, note: str) -> None:
    """Stop for good: devices that have not installed are told to skip the release."""
    ctx.store.rollouts.abort(deployment_id, note or f"aborted by {user}")
    ctx.push.cancelled(deployment_id)  # devices under way learn to skip it
    audit_detail(request, deployment=deployment_id, note=note)


def advance(ctx: ServerContext, request: Request, deployment_id: int, *, force: bool) -> None:
    """Ask to enter the next phase (its criteria must hold), or ``force`` it; evaluate now."""
    ctx.store.rollouts.advance(deployment_id, force=force)
    audit_detail(request, deployment=deployment_id, force=force)
    evaluate_one(ctx, deployment_id)


def approve(ctx: ServerContext, deployment_id: int, me: Principal) -> None:
    """Second person of the two-person rule: releases a deployment waiting for approval, or
    lets a running phased rollout enter its next (gated) phase."""
    if ctx.store.deployment_state(deployment_id) == "active" and ctx.store.rollouts.has_rollout(
        deployment_id
    ):
        ctx.store.rollouts.approve_phase(deployment_id, me)
    else:
        ctx.identity.approve(deployment_id, me)
        ctx.push.deployment(deployment_id)  # released to its devices now: wake them


def acknowledge(ctx: ServerContext, request: Request, alert_id: int, user: str) -> AlertView:
    """Mark an alert as seen (``ConflictError`` if it already was)."""
    view = ctx.store.monitoring.acknowledge(alert_id, user)
    audit_detail(request, alert=alert_id, kind=view.kind, subject=view.subject)
    return view

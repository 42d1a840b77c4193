"""The rollout evaluator: a small task in the server that applies ``fleet.rollout.decide`` to
every running rollout, periodically, off the check-in hot path.

Each evaluation is one transaction (``store/rollouts.Rollouts.evaluate``); a verdict that
changes the rollout (advance, pause, abort, complete) is written to the audit log with its
evidence, as ``system:rollout``. Operator routes call ``evaluate_one`` for an answer at once.
Several server processes may run it: the deployment row is locked for each evaluation.
"""

from __future__ import annotations

import logging

from otaguard.errors import OTAGuardError
from otaguard.fleet.rollout import Action
from otaguard.server.context import ServerContext
from otaguard.store.rollouts import Evaluation

log = logging.getLogger(__name__)
ACTOR = "system:rollout"


def evaluate_one(ctx: ServerContext, deployment_id: int) -> Evaluation | None:
    """Evaluate one rollout now and audit what changed."""
    result = ctx.store.rollouts.evaluate(deployment_id)
    if result is not None:  # devices newly let start, or told to skip: wake them (push)
        if result.admitted_ids:
            ctx.push.devices(result.admitted_ids)
        if result.decision.action is Action.ABORT:
            ctx.push.cancelled(deployment_id)
    if result is not None and result.changed and result.decision.action is not Action.WAIT:
        d = result.decision
        ctx.identity.audit(
            actor=ACTOR,
            action=f"rollout.{d.action.value}",
            target=f"deployment:{deployment_id}",
            detail={"reason": d.reason.value, "message": d.message, "evidence": dict(d.evidence)},
        )
    return result


def evaluate_all(ctx: ServerContext) -> list[Evaluation]:
    """One pass over every running or paused rollout; a failing one does not stop the rest."""
    results = []
    for deployment_id in ctx.store.rollouts.pending_ids():
        try:
            result = evaluate_one(ctx, deployment_id)
        except OTAGuardError as exc:  # a damaged plan, a raced state change: next pass
            log.warning("rollout %s not evaluated: %s", deployment_id, exc)
            continue
        if result is not None:
            results.append(result)
    return results

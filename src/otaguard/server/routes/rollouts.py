"""Phased rollouts: see where one stands, pause, resume, abort, advance, evaluate now.

The evaluator (``server/evaluator.py``) runs these decisions on its own; the operator routes
here change the rollout through ``fleet.progress``'s transitions (a request that does not fit
the rollout's state is a 409) and evaluate at once, so the answer shows the effect; the steps
are ``server/rollout_control.py``'s, shared with the web console. Every call is audited by the
middleware. Entering a phase that needs approval (production groups) takes
the two-person rule: ``POST .../approve`` by another person than the creator.
"""

from fastapi import APIRouter, Request

from otaguard.server import rollout_control
from otaguard.server import rollout_schemas as rs
from otaguard.server.evaluator import evaluate_one
from otaguard.server.routes.params import ERROR_RESPONSES, DeploymentIdPath, Operator
from otaguard.server.state import Ctx

router = APIRouter(prefix="/api/v1", tags=["rollouts"], responses=ERROR_RESPONSES)


def _view(ctx: Ctx, deployment_id: int) -> rs.RolloutOut:
    return rs.RolloutOut.model_validate(ctx.store.rollouts.view(deployment_id))


@router.get("/deployments/{deployment_id}/rollout", response_model=rs.RolloutOut)
def rollout(deployment_id: DeploymentIdPath, _user: Operator, ctx: Ctx) -> rs.RolloutOut:
    """The rollout's status, current phase, last decision and per phase its devices' counts
    (409 for a deployment without a plan)."""
    return _view(ctx, deployment_id)


@router.post("/deployments/{deployment_id}/pause", response_model=rs.RolloutOut)
def pause(
    deployment_id: DeploymentIdPath, body: rs.NoteIn, user: Operator, ctx: Ctx, request: Request
) -> rs.RolloutOut:
    """Stop offering the release to devices that have not started (those updating go on)."""
    rollout_control.pause(ctx, request, deployment_id, user, body.note)
    return _view(ctx, deployment_id)


@router.post("/deployments/{deployment_id}/resume", response_model=rs.RolloutOut)
def resume(
    deployment_id: DeploymentIdPath, body: rs.NoteIn, _user: Operator, ctx: Ctx, request: Request
) -> rs.RolloutOut:
    """Resume a paused rollout; outcomes seen so far are acknowledged (not judged again)."""
    rollout_control.resume(ctx, request, deployment_id, body.note)
    return _view(ctx, deployment_id)


@router.post("/deployments/{deployment_id}/abort", response_model=rs.RolloutOut)
def abort(
    deployment_id: DeploymentIdPath, body: rs.NoteIn, user: Operator, ctx: Ctx, request: Request
) -> rs.RolloutOut:
    """Stop for good: devices that have not installed are told to skip the release."""
    rollout_control.abort(ctx, request, deployment_id, user, body.note)
    return _view(ctx, deployment_id)


@router.post("/deployments/{deployment_id}/advance", response_model=rs.RolloutOut)
def advance(
    deployment_id: DeploymentIdPath, body: rs.AdvanceIn, _user: Operator, ctx: Ctx, request: Request
) -> rs.RolloutOut:
    """Ask to enter the next phase (its criteria must hold), or ``force`` it now."""
    rollout_control.advance(ctx, request, deployment_id, force=body.force)
    return _view(ctx, deployment_id)


@router.post("/deployments/{deployment_id}/evaluate", response_model=rs.EvaluationOut)
def evaluate(deployment_id: DeploymentIdPath, _user: Operator, ctx: Ctx) -> rs.EvaluationOut:
    """Evaluate the rollout now (the evaluator also does, periodically)."""
    result = evaluate_one(ctx, deployment_id)
    if result is None:
        return rs.EvaluationOut(
            action="none", reason="not_running", message="nothing to evaluate", admitted=0
        )
    d = result.decision
    return rs.EvaluationOut(
        action=d.action.value, reason=d.reason.value, message=d.message, admitted=result.admitted
    )

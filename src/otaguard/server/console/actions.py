"""Which buttons a deployment page offers this operator: pure, from the deployment's state,
its phased rollout (if any), who created it, and the operator's roles. The server still checks
every action on its own (RBAC, the two-person rule, the rollout's state machine); this only
keeps the page honest, so a viewer sees no button it may not use and nobody is offered a
button that the rollout's state would refuse.

A running rollout whose evaluator stopped at a gated phase ("needs approval") offers approvers
"Approve next phase", the same route and two-person rule as approving the deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

from otaguard.fleet.progress import RolloutStatus
from otaguard.fleet.status import DeploymentState
from otaguard.identity.rbac import Action, Principal, may_approve

OPEN_STATES = frozenset({DeploymentState.ACTIVE.value, DeploymentState.AWAITING_APPROVAL.value})
#: deployment states that never change again
FINAL_STATES = frozenset(
    {
        DeploymentState.COMPLETED.value,
        DeploymentState.CANCELLED.value,
        DeploymentState.ABORTED.value,
    }
)


@dataclass(frozen=True)
class Offered:
    name: str  # the last path segment of the action's route
    label: str
    enabled: bool
    note: str = ""
    danger: bool = False


@dataclass(frozen=True)
class RolloutFacts:
    """What the buttons depend on: the rollout's status, its current phase, how many."""

    status: str
    phase: int
    phases: int
    awaiting_approval: bool = False  # the evaluator waits for a 2nd person to open the next phase

    @property
    def has_next(self) -> bool:
        return self.phase + 1 < self.phases


def _approval(
    state: str, created_by: str, me: Principal, rollout: RolloutFacts | None
) -> list[Offered]:
    waiting = state == DeploymentState.AWAITING_APPROVAL.value
    gated = (
        rollout is not None
        and state == DeploymentState.ACTIVE.value
        and rollout.status == RolloutStatus.RUNNING.value
        and rollout.awaiting_approval
        and rollout.has_next
    )
    if not (waiting or gated) or not me.decide(Action.DEPLOYMENT_APPROVE).allowed:
        return []
    decision = may_approve(approver=me.name, approver_roles=me.roles, created_by=created_by)
    note = "" if decision.allowed else "another approver must approve it (two-person rule)"
    label = "Approve" if waiting else "Approve the next phase"
    return [Offered("approve", label, decision.allowed, note)]


def rollout_actions(state: str, rollout: RolloutFacts, me: Principal) -> list[Offered]:
    """Pause, resume, advance and abort of a running phased rollout."""
    if state != DeploymentState.ACTIVE.value or not me.decide(Action.DEPLOYMENT_CONTROL).allowed:
        return []
    out: list[Offered] = []
    if rollout.status == RolloutStatus.RUNNING.value:
        out.append(Offered("pause", "Pause rollout", True))
    if rollout.status == RolloutStatus.PAUSED.value:
        out.append(Offered("resume", "Resume rollout", True))
    if rollout.status == RolloutStatus.RUNNING.value and rollout.has_next:
        out.append(Offered("advance", "Advance to the next phase", True))
    if rollout.status in (RolloutStatus.RUNNING.value, RolloutStatus.PAUSED.value):
        out.append(Offered("abort", "Abort rollout", True, danger=True))
    return out


def deployment_actions(
    state: str, created_by: str, me: Principal, rollout: RolloutFacts | None = None
) -> list[Offered]:
    out = _approval(state, created_by, me, rollout)
    running_rollout = rollout is not None and state == DeploymentState.ACTIVE.value
    if rollout is not None:
        out += rollout_actions(state, rollout, me)
    if (
        state in OPEN_STATES
        and not running_rollout  # a running rollout is stopped by "abort", which tells devices
        and me.decide(Action.DEPLOYMENT_CANCEL).allowed
    ):
        out.append(Offered("cancel", "Cancel deployment", True, danger=True))
    return out

"""Which buttons a deployment page offers this operator: pure, from the deployment's state,
who created it, and the operator's roles. The server still checks every action on its own
(RBAC, the two-person rule, the state machine); this only keeps the page honest, so a viewer
sees no button it may not use.

Hook: pause and resume (and per-phase controls) join this list when the store has a paused
state; until then they are not offered rather than shown and refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from otaguard.fleet.status import DeploymentState
from otaguard.identity.rbac import Action, Principal, may_approve

OPEN_STATES = frozenset({DeploymentState.ACTIVE.value, DeploymentState.AWAITING_APPROVAL.value})


@dataclass(frozen=True)
class Offered:
    name: str  # the last path segment of the action's route
    label: str
    enabled: bool
    note: str = ""


def deployment_actions(state: str, created_by: str, me: Principal) -> list[Offered]:
    out: list[Offered] = []
    if (
        state == DeploymentState.AWAITING_APPROVAL.value
        and me.decide(Action.DEPLOYMENT_APPROVE).allowed
    ):
        decision = may_approve(approver=me.name, approver_roles=me.roles, created_by=created_by)
        note = "" if decision.allowed else "another approver must approve it (two-person rule)"
        out.append(Offered("approve", "Approve", decision.allowed, note))
    if state in OPEN_STATES and me.decide(Action.DEPLOYMENT_CANCEL).allowed:
        out.append(Offered("cancel", "Cancel deployment", True))
    return out

"""Production groups and deployment approvals: the stored half of the two-person rule.

Why a module of its own: marking a tag as production makes every deployment that reaches it
wait (the server hands ``production_groups()`` to ``Store.create_deployment``), and releasing such a
deployment is a security decision (``rbac.may_approve``: another person than its creator,
with the right role, not managed by the creator and with a password of their own) taken under a lock on the deployment row, so two approvals or an
approval racing a cancellation cannot both win.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from otaguard.errors import ConflictError, ForbiddenError, NotFoundError
from otaguard.fleet.status import DeploymentState
from otaguard.identity.rbac import DutyFacts, Principal, may_approve
from otaguard.store.engine import Database
from otaguard.store.identity_models import DeploymentApproval, ProductionGroup
from otaguard.store.models import Deployment


class Approvals:
    """Production groups and approvals on one ``Database`` (one transaction per method)."""

    def __init__(self, db: Database, duty_facts: Callable[[str], DutyFacts]) -> None:
        self.db = db
        self.duty_facts = duty_facts

    def set_production(self, tag: str, production: bool, *, by: str) -> None:
        with self.db.session() as s:
            row = s.get(ProductionGroup, tag)
            if production and row is None:
                s.add(ProductionGroup(tag=tag, created_by=by))
            elif not production and row is not None:
                s.delete(row)

    def production_groups(self) -> list[str]:
        with self.db.session(write=False) as s:
            return list(s.scalars(select(ProductionGroup.tag).order_by(ProductionGroup.tag)))

    def approve(self, deployment_id: int, approver: Principal) -> None:
        """Two-person rule: an approver other than the creator releases a deployment waiting
        for approval (devices are offered it from their next check-in).

        Raises:
            NotFoundError: no such deployment.
            ForbiddenError: refused: the approver created the deployment or lacks the role
                (retrying does not help; another person must approve).
            ConflictError: the deployment is not awaiting approval (already approved,
                cancelled or never gated); nothing changed.
        """
        with self.db.session(write=False) as s:
            dep = s.get(Deployment, deployment_id)
            if dep is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            creator = dep.created_by
        approver_facts = self.duty_facts(approver.name)
        creator_facts = self.duty_facts(creator)
        with self.db.session() as s:
            dep = s.get(Deployment, deployment_id, with_for_update=True)
            if dep is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            decision = may_approve(
                approver=approver.name,
                approver_roles=approver.roles,
                created_by=dep.created_by,
                approver_facts=approver_facts,
                creator_facts=creator_facts,
            )
            if not decision.allowed:
                raise ForbiddenError(decision.reason)
            if dep.state != DeploymentState.AWAITING_APPROVAL.value:
                raise ConflictError(
                    f"deployment {deployment_id} is {dep.state}, not awaiting approval"
                )
            s.add(DeploymentApproval(deployment_id=deployment_id, approved_by=approver.name))
            dep.state = DeploymentState.ACTIVE.value

    def approval(self, deployment_id: int) -> str | None:
        with self.db.session(write=False) as s:
            row = s.get(DeploymentApproval, deployment_id)
            return None if row is None else row.approved_by

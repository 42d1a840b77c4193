"""Identities and access: login and API tokens, users and roles, production groups and
approvals (two-person rule), the audit log. Every change an operator makes through any route
is audited by ``server/auth.py``'s ``AuditMiddleware``."""

import datetime as dt
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from otaguard.server import identity_schemas as sch
from otaguard.server import rollout_control
from otaguard.server.auth import client_address, principal_of, rate_limited
from otaguard.server.login import password_login
from otaguard.server.routes.params import ERROR_RESPONSES, Operator
from otaguard.server.state import Ctx, Metrics, failures_of

router = APIRouter(prefix="/api/v1", tags=["identity"], responses=ERROR_RESPONSES)


@router.post("/auth/login", response_model=sch.TokenOut)
def login(body: sch.LoginIn, request: Request, ctx: Ctx, metrics: Metrics) -> sch.TokenOut:
    """Password login (argon2id); returns an API token (12 h). Repeated failures lock the
    account and rate-limit the client address."""
    client = client_address(request)
    failures = failures_of(request)
    if failures.blocked(client, time.monotonic()):  # checking a password is what costs
        raise rate_limited(request, "auth.login.rate_limited", "login")
    issued = password_login(
        ctx,
        metrics,
        failures,
        client=client,
        username=body.username,
        password=body.password,
        scopes=body.scopes,
    )
    return sch.TokenOut(id=issued.id, token=issued.token, expires_at=issued.expires_at)


@router.put("/auth/password", status_code=204)
def change_own_password(
    body: sch.OwnPasswordIn, request: Request, _user: Operator, ctx: Ctx
) -> None:
    """Replace your own password (the current one proves it is you). Needed once after an
    administrator set or reset it, before you may approve deployments again."""
    ctx.identity.change_own_password(
        principal_of(request).name, body.current, body.new, client=client_address(request)
    )


@router.post("/auth/tokens", response_model=sch.TokenOut, status_code=201)
def create_token(body: sch.TokenIn, request: Request, _user: Operator, ctx: Ctx) -> sch.TokenOut:
    """A new API token for the caller, limited to ``scopes`` (``*``: all the caller's
    roles allow) and expiring after ``ttl_seconds``."""
    me = principal_of(request)
    issued = ctx.identity.create_token(
        me.name,
        scopes=body.scopes,
        ttl=dt.timedelta(seconds=body.ttl_seconds),
        label=body.label,
    )
    return sch.TokenOut(id=issued.id, token=issued.token, expires_at=issued.expires_at)


@router.get("/auth/tokens", response_model=list[sch.TokenInfo])
def list_tokens(request: Request, _user: Operator, ctx: Ctx) -> list[sch.TokenInfo]:
    return [
        sch.TokenInfo(**t.__dict__) for t in ctx.identity.list_tokens(principal_of(request).name)
    ]


@router.delete("/auth/tokens/{token_id}", status_code=204)
def revoke_token(
    token_id: Annotated[str, Path(max_length=32)], request: Request, _user: Operator, ctx: Ctx
) -> None:
    ctx.identity.revoke_token(token_id, user=principal_of(request).name)


@router.get("/users", response_model=list[sch.UserOut])
def list_users(_user: Operator, ctx: Ctx) -> list[sch.UserOut]:
    return [sch.UserOut(**u.__dict__) for u in ctx.identity.list_users()]


@router.post("/users", response_model=sch.UserOut, status_code=201)
def add_user(body: sch.UserIn, user: Operator, ctx: Ctx) -> sch.UserOut:
    return sch.UserOut(
        **ctx.identity.add_user(body.name, body.roles, body.password, by=user).__dict__
    )


@router.put("/users/{name}/roles", response_model=sch.UserOut)
def set_roles(
    name: Annotated[str, Path(pattern=sch.NAME)], body: sch.RolesIn, user: Operator, ctx: Ctx
) -> sch.UserOut:
    return sch.UserOut(**ctx.identity.set_roles(name, body.roles, by=user).__dict__)


@router.put("/users/{name}/password", response_model=sch.UserOut)
def set_password(
    name: Annotated[str, Path(pattern=sch.NAME)], body: sch.PasswordIn, user: Operator, ctx: Ctx
) -> sch.UserOut:
    """Administrative reset: revokes the account's tokens; it cannot approve until its user
    sets their own password (``PUT /api/v1/auth/password``)."""
    return sch.UserOut(**ctx.identity.set_password(name, body.password, by=user).__dict__)


@router.get("/groups", response_model=sch.GroupsOut)
def groups(_user: Operator, ctx: Ctx) -> sch.GroupsOut:
    return sch.GroupsOut(production=ctx.identity.production_groups())


@router.put("/groups/{tag}", response_model=sch.GroupsOut)
def set_group(
    tag: Annotated[str, Path(max_length=64)], body: sch.GroupIn, user: Operator, ctx: Ctx
) -> sch.GroupsOut:
    """Mark a device tag as a production group (deployments reaching it need approval)."""
    ctx.identity.set_production(tag, body.production, by=user)
    return sch.GroupsOut(production=ctx.identity.production_groups())


@router.post("/deployments/{deployment_id}/approve", response_model=sch.ApprovalOut)
def approve(
    deployment_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    request: Request,
    _user: Operator,
    ctx: Ctx,
) -> sch.ApprovalOut:
    """Second person of the two-person rule: an approver who did not create the
    deployment releases it to its devices."""
    me = principal_of(request)
    # a running phased rollout: the approval lets it enter its next phase
    rollout_control.approve(ctx, deployment_id, me)
    return sch.ApprovalOut(
        deployment_id=deployment_id,
        approved_by=me.name,
        state=ctx.store.deployment_state(deployment_id),
    )


@router.get("/audit", response_model=list[sch.AuditEntryOut])
def audit(_user: Operator, ctx: Ctx, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    """Audit entries with ``seq > after`` (at most ``limit``), in order."""
    out: list[dict[str, Any]] = []
    for e in ctx.identity.audit_entries():
        if e.seq <= after:
            continue
        out.append({**e.body(), "hash": e.hash, "mac": e.mac})
        if len(out) >= max(1, min(limit, 10_000)):
            break
    return out

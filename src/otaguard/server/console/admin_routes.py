"""Console pages for administrators and for one's own access: the audit log (with the state
of its hash chain, and export), operators and their roles, API tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from otaguard.identity import audit as chain
from otaguard.identity.rbac import Role
from otaguard.server import identity_schemas as sch
from otaguard.server.console.paging import Paging
from otaguard.server.console.render import ConsoleRoute, page
from otaguard.server.console.session import ConsoleUser
from otaguard.server.context import ServerContext
from otaguard.server.state import Ctx

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

AUDIT_PER_PAGE = 100
ROLES = tuple(r.value for r in Role)
UserName = Annotated[str, Path(pattern=sch.NAME)]
TokenId = Annotated[str, Path(max_length=32)]
DONE = {
    "user": "Operator created.",
    "roles": "Roles saved.",
    "revoked": "Token revoked.",
}


def _audit_values(ctx: ServerContext, paging: Paging) -> dict[str, Any]:
    """Verifies the whole chain (as ``otaguard audit verify`` does) and keeps one page of
    entries, newest first."""
    entries = list(ctx.identity.audit_entries())
    problems = chain.verify_chain(entries)
    end = max(0, len(entries) - paging.offset)
    shown = entries[max(0, end - paging.size) : end]
    return {
        "entries": list(reversed(shown)),
        "count": len(entries),
        "problems": problems,
        "head": entries[-1].hash if entries else "",
        "paging": paging.of(len(entries)),
    }


@router.get("/audit")
async def audit(
    request: Request,
    _user: ConsoleUser,
    ctx: Ctx,
    page_no: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
) -> Response:
    values = await run_in_threadpool(_audit_values, ctx, Paging(page_no, AUDIT_PER_PAGE))
    return page(request, "audit.html", **values)


@router.get("/audit/export")
def audit_export(_user: ConsoleUser, ctx: Ctx) -> Response:
    """Every entry as JSON lines, the format ``otaguard audit verify`` checks offline."""

    def lines() -> Iterator[str]:
        for entry in ctx.identity.audit_entries():
            yield entry.to_json() + "\n"

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"content-disposition": 'attachment; filename="otaguard-audit.jsonl"'},
    )


@router.get("/operators")
async def operators(
    request: Request,
    _user: ConsoleUser,
    ctx: Ctx,
    done: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    users = await run_in_threadpool(ctx.identity.list_users)
    tokens = await run_in_threadpool(ctx.identity.list_tokens)
    return page(
        request,
        "operators.html",
        users=users,
        tokens=[t for t in tokens if not t.revoked],
        roles=ROLES,
        done=DONE.get(done, ""),
    )


@router.post("/operators")
async def add_operator(
    _user: ConsoleUser,
    ctx: Ctx,
    name: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    roles: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """As ``POST /api/v1/users``: the API's body model, then the same identity call."""
    body = sch.UserIn(name=name, roles=roles or [], password=password or None)
    await run_in_threadpool(ctx.identity.add_user, body.name, body.roles, body.password)
    return RedirectResponse("/console/operators?done=user", status_code=303)


@router.post("/operators/{name}/roles")
async def set_roles(
    name: UserName,
    _user: ConsoleUser,
    ctx: Ctx,
    roles: Annotated[list[str] | None, Form()] = None,
) -> Response:
    body = sch.RolesIn(roles=roles or [])
    await run_in_threadpool(ctx.identity.set_roles, name, body.roles)
    return RedirectResponse("/console/operators?done=roles", status_code=303)


@router.post("/operators/tokens/{token_id}/revoke")
async def revoke_any_token(token_id: TokenId, _user: ConsoleUser, ctx: Ctx) -> Response:
    """An administrator revokes anyone's token (a leaked or forgotten one)."""
    await run_in_threadpool(ctx.identity.revoke_token, token_id)
    return RedirectResponse("/console/operators?done=revoked", status_code=303)


@router.get("/tokens")
async def tokens(
    request: Request,
    user: ConsoleUser,
    ctx: Ctx,
    done: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    mine = await run_in_threadpool(ctx.identity.list_tokens, user.name)
    return page(
        request,
        "tokens.html",
        tokens=mine,
        current=user.token_id,
        done=DONE.get(done, ""),
    )


@router.post("/tokens/{token_id}/revoke")
async def revoke_own_token(token_id: TokenId, user: ConsoleUser, ctx: Ctx) -> Response:
    """Revoke one of one's own tokens, as ``DELETE /api/v1/auth/tokens/{id}``."""
    await run_in_threadpool(lambda: ctx.identity.revoke_token(token_id, user=user.name))
    return RedirectResponse("/console/tokens?done=revoked", status_code=303)

"""Console routes reachable without a session: the login page, logout, the static files."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from otaguard.errors import AuthError, NotFoundError
from otaguard.server.auth import client_address
from otaguard.server.console import session as sess
from otaguard.server.console.render import ConsoleRoute, page
from otaguard.server.console.static_files import static_files
from otaguard.server.login import password_login
from otaguard.server.state import Ctx, Metrics, failures_of

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def _login_form(
    request: Request, *, status: int = 200, error: str = "", next_path: str = "/console/"
) -> Response:
    nonce = sess.new_login_nonce()
    notice = ""
    if request.query_params.get("expired"):
        notice = "Your session has expired. Please log in again."
    elif request.query_params.get("logged_out"):
        notice = "You are logged out."
    response = page(
        request,
        "login.html",
        status=status,
        error=error,
        notice=notice,
        nonce=nonce,
        next_path=sess.safe_next(next_path),
    )
    response.headers.append(
        "set-cookie", sess.cookie_header(sess.LOGIN_COOKIE, nonce, max_age=3600)
    )
    return response


@router.get("")
def console_root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=303)


@router.get("/login")
def login_page(request: Request) -> Response:
    return _login_form(request, next_path=request.query_params.get("next", "/console/"))


@router.post("/login")
async def login(
    request: Request,
    ctx: Ctx,
    metrics: Metrics,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    login_csrf: Annotated[str, Form(max_length=64)] = "",
    next: Annotated[str, Form(max_length=512)] = "/console/",
) -> Response:
    """Password login with the API's own code (rate limit, lock-out, argon2id, audit)."""
    cookie = request.cookies.get(sess.LOGIN_COOKIE, "")
    if not cookie or not login_csrf or not hmac.compare_digest(cookie, login_csrf):
        return _login_form(
            request, status=400, error="The login form expired; please try again.", next_path=next
        )
    try:
        issued = await run_in_threadpool(
            password_login,
            ctx,
            metrics,
            failures_of(request),
            client=client_address(request),
            username=username,
            password=password,
            ttl=sess.SESSION_TTL,
            via="console",
        )
    except AuthError as exc:
        status = 429 if exc.code == "rate_limited" else 401
        return _login_form(request, status=status, error=str(exc), next_path=next)
    response = RedirectResponse(sess.safe_next(next), status_code=303)
    max_age = int(sess.SESSION_TTL.total_seconds())
    response.headers.append(
        "set-cookie", sess.cookie_header(sess.SESSION_COOKIE, issued.token, max_age=max_age)
    )
    response.headers.append("set-cookie", sess.cookie_header(sess.LOGIN_COOKIE, "", max_age=0))
    return response


def _end_session(ctx: Ctx, request: Request, token: str, submitted: str) -> None:
    try:
        principal = ctx.identity.authenticate(token)
    except AuthError:
        return  # already over
    if not sess.csrf_ok(token, submitted):
        raise sess.CsrfError("the form's security token is missing or wrong; reload the page")
    if principal.token_id is not None:
        ctx.identity.revoke_token(principal.token_id, user=principal.name)
    ctx.identity.audit(
        actor=f"user:{principal.name}",
        action="auth.logout",
        target=principal.name,
        detail={"token": principal.token_id, "client": client_address(request), "via": "console"},
    )


@router.post("/logout")
async def logout(
    request: Request, ctx: Ctx, csrf: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    """End the session: its token is revoked on the server, not only forgotten."""
    token = request.cookies.get(sess.SESSION_COOKIE)
    if token:
        await run_in_threadpool(_end_session, ctx, request, token, csrf)
    response = RedirectResponse("/console/login?logged_out=1", status_code=303)
    response.headers.append("set-cookie", sess.cookie_header(sess.SESSION_COOKIE, "", max_age=0))
    return response


@router.get("/static/{name}")
def static(name: str, request: Request) -> Response:
    found = static_files().get(name)
    if found is None:
        raise NotFoundError(f"no file {name}")
    headers = {"etag": f'"{found.etag}"', "cache-control": "public, max-age=86400"}
    if request.headers.get("if-none-match") == f'"{found.etag}"':
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)

"""Turning a page's values into HTML: the Jinja2 environment (autoescaped, strict about
undefined names), the values every page shares, and the route class that turns errors into
pages (and a missing session into the login page) instead of the API's JSON."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine, Sequence
from importlib import resources
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError

from otaguard.errors import OTAGuardError
from otaguard.identity.rbac import Action, Principal
from otaguard.server.console import timefmt
from otaguard.server.console.session import (
    SAFE_METHODS,
    SESSION_COOKIE,
    LoginRequired,
    cookie_header,
    login_url,
)
from otaguard.server.console.static_files import static_url
from otaguard.server.http_errors import error_status

ENV = Environment(
    loader=PackageLoader("otaguard.server.console", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.globals["static"] = static_url
ENV.filters["abstime"] = timefmt.absolute
ENV.filters["isotime"] = timefmt.iso
assert resources.files("otaguard.server.console").joinpath("templates").is_dir()


def compile_templates() -> None:
    """Compile every template once, at startup, so no operator waits for it."""
    for name in ENV.list_templates(extensions=["html"]):
        ENV.get_template(name)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _can(principal: Principal | None) -> Callable[[str], bool]:
    def can(action: str) -> bool:
        return principal is not None and principal.decide(Action(action)).allowed

    return can


def shared_values(request: Request) -> dict[str, Any]:
    """What the layout needs: the operator (if any), the CSRF token of their forms, a
    permission test for buttons, the current path for navigation, and the time."""
    principal = getattr(request.state, "console_principal", None)
    now = utcnow()
    return {
        "user": principal,
        "csrf": getattr(request.state, "console_csrf", ""),
        "can": _can(principal),
        "path": request.url.path,
        "now": now,
        "ago": lambda when: timefmt.relative(when, now),
    }


def page(request: Request, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    html = ENV.get_template(template).render(**shared_values(request), **values)
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    return page(request, "error.html", status=status, title=title, detail=detail)


def _login_redirect(request: Request, exc: LoginRequired) -> Response:
    target = request.url.path if request.method in SAFE_METHODS else "/console/"
    url = login_url(target) + ("&expired=1" if exc.expired else "")
    response = RedirectResponse(url, status_code=303)
    if exc.expired:
        response.headers.append("set-cookie", cookie_header(SESSION_COOKIE, "", max_age=0))
    return response


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class ConsoleRoute(APIRoute):
    """An ``APIRoute`` whose errors are pages: no session goes to the login page, an
    ``OTAGuardError`` is shown with its usual status, bad input is a 422 page."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                return _login_redirect(request, exc)
            except OTAGuardError as exc:
                status = error_status(exc)
                return error_page(request, status, _TITLES.get(status, "Refused"), str(exc))
            except RequestValidationError as exc:
                return error_page(request, 422, "Invalid input", _fields(exc.errors(), skip=1))
            except ValidationError as exc:
                return error_page(request, 422, "Invalid input", _fields(exc.errors(), skip=0))

        return handle


def _fields(errors: Sequence[Any], *, skip: int) -> str:
    """Which inputs were refused and why, without echoing what was sent."""
    parts = [
        f"{'.'.join(str(p) for p in e['loc'][skip:]) or 'input'}: {e['msg']}" for e in errors[:5]
    ]
    return "; ".join(parts) or "check the form"


_TITLES = {
    400: "Invalid request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    422: "Cannot do that",
    429: "Too many attempts",
}

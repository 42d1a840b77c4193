"""Authorization matrix generated from the application's route table: every endpoint x every
role x unauthenticated. A route added without a policy entry fails ``test_every_route_has_a_
policy`` and is refused at run time."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI

from otaguard.identity.rbac import (
    ROUTE_ACTIONS,
    Access,
    Action,
    Role,
    decide,
    request_action,
    route_action,
)
from otaguard.server.auth import app_routes, bearer_token
from otaguard.server.console.session import SESSION_COOKIE, csrf_token

from .conftest import World

DUMMY = {"deployment_id": "1", "sha256": "00" * 32, "token_id": "nope", "serial": "ff"}


def routes(app: FastAPI) -> list[tuple[str, str]]:
    return app_routes(app)


def unmapped(app: FastAPI) -> list[tuple[str, str]]:
    return [(m, p) for m, p in routes(app) if route_action(m, p) is None]


def concrete(path: str) -> str:
    return re.sub(r"\{([^}:]+)(:path)?\}", lambda m: DUMMY.get(m.group(1), "x-1"), path)


CONSOLE = "/console"


def console_call(world: World, method: str, path: str, headers: dict[str, str]) -> int:
    """A console route is reached with the session cookie (an operator token) instead of the
    bearer header, and a change carries the session's CSRF token; refused without a session
    means sent to the login page."""
    token = bearer_token(headers.get("Authorization"))
    cookies = {SESSION_COOKIE: token} if token else {}
    kwargs: dict[str, Any] = {"follow_redirects": False}
    if method in ("POST", "PUT"):
        kwargs["data"] = {"csrf": csrf_token(token)} if token else {}
    world.client.cookies.clear()
    for name, value in cookies.items():
        world.client.cookies.set(name, value)
    r = world.client.request(method, concrete(path), **kwargs)
    world.client.cookies.clear()
    if r.status_code == 303 and r.headers["location"].startswith("/console/login?next="):
        return 401
    return r.status_code


def call(world: World, method: str, path: str, headers: dict[str, str]) -> int:
    if path.startswith(CONSOLE):
        return console_call(world, method, path, headers)
    kwargs: dict[str, Any] = {"headers": headers}
    if method in ("POST", "PUT"):
        kwargs["json"] = {}
    return world.client.request(method, concrete(path), **kwargs).status_code


def test_every_route_has_a_policy(world: World) -> None:
    app = world.client.app
    assert isinstance(app, FastAPI)
    assert len(routes(app)) > 30
    assert unmapped(app) == []


def test_every_policy_names_a_route_the_app_serves(world: World) -> None:
    """No policy for a route that does not exist (a leftover grants nothing, but it reads as
    if the action had an API)."""
    app = world.client.app
    assert isinstance(app, FastAPI)
    served = set(routes(app))
    assert [key for key in ROUTE_ACTIONS if key not in served] == []


def test_a_route_added_without_policy_is_caught_and_refused(world: World) -> None:
    app = world.client.app
    assert isinstance(app, FastAPI)
    from fastapi import Depends
    from fastapi.routing import APIRoute, iter_route_contexts

    route = next(
        rc.original_route for rc in iter_route_contexts(app.routes) if rc.path == "/api/v1/releases"
    )
    assert isinstance(route, APIRoute)
    operator = next(
        d.call
        for d in route.dependant.dependencies
        if getattr(d.call, "__name__", "") == "operator"
    )

    @app.post("/api/v1/secret-new-thing")
    def new_thing(_u: str = Depends(operator)) -> dict[str, str]:
        return {"did": "it"}

    assert ("POST", "/api/v1/secret-new-thing") in unmapped(app)
    r = world.client.post("/api/v1/secret-new-thing", headers=world.auth("admin"))
    assert r.status_code == 403
    assert "no access policy" in r.json()["detail"]


def test_matrix(world: World) -> None:
    """Every route x every role x unauthenticated gets what the policy says."""
    app = world.client.app
    assert isinstance(app, FastAPI)
    app.state.auth_failures.limit = 10**9  # the matrix makes many unauthenticated calls
    checked = 0
    failures: list[str] = []
    for method, path in routes(app):
        policy = route_action(method, path)
        assert policy is not None
        anon = call(world, method, path, {})
        if isinstance(policy, Action):
            if anon != 401:
                failures.append(f"{method} {path} unauthenticated -> {anon}")
            for role in Role:
                status = call(world, method, path, world.auth(role.value))
                allowed = decide({role}, {"*"}, policy).allowed
                ok = status not in (401, 403) if allowed else status == 403
                checked += 1
                if not ok:
                    failures.append(f"{method} {path} as {role} -> {status} (allowed={allowed})")
        elif policy is Access.DEVICE:
            # operators are not devices: an operator token does not authenticate a device
            if anon != 401:
                failures.append(f"{method} {path} unauthenticated -> {anon}")
            status = call(world, method, path, world.auth("admin"))
            if status != 401:
                failures.append(f"{method} {path} with an operator token -> {status}")
        elif policy is Access.ENROLLMENT:
            if anon < 400:
                failures.append(f"{method} {path} without factory token -> {anon}")
        else:  # public
            if anon in (401, 403):
                failures.append(f"{method} {path} public but refused: {anon}")
    assert failures == []
    assert checked >= 25 * len(Role)


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_scoped_token_limits_a_role(world: World, role: str) -> None:
    user = f"u-{role}"
    scoped = world.ctx.identity.create_token(user, scopes=["release.read"]).token
    h = {"Authorization": f"Bearer {scoped}"}
    assert world.client.get("/api/v1/releases", headers=h).status_code == 200
    r = world.client.get("/api/v1/deployments", headers=h)
    assert r.status_code == 403
    assert "not scoped" in r.json()["detail"]


def test_each_route_template_matches_only_its_own_policy() -> None:
    """Run-time matching of a request to its policy is unambiguous for every template."""
    for (method, path), policy in ROUTE_ACTIONS.items():
        assert request_action(method, concrete(path)) == policy, (method, path)
    assert request_action("GET", "/api/v1/nothing-here") is None
    assert request_action("DELETE", "/api/v1/devices/x") is None

"""The shape of the server's routes (``server/routes/``): every handler is a plain module-level
function of a route module, the documented operations are exactly the routers' own, and a
handler answers from the application it serves (its ``app.state``), not from a closure."""

from __future__ import annotations

from typing import cast

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from otaguard.server.app import create_app
from otaguard.server.context import ServerContext
from otaguard.server.metrics import ServerMetrics
from otaguard.server.routes import ROUTERS


def _bare_app():  # type: ignore[no-untyped-def]
    return create_app(cast(ServerContext, None))  # no context: routes that need none only


def test_handlers_are_module_level_functions_of_route_modules() -> None:
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            endpoint = route.endpoint
            assert endpoint.__module__.startswith("otaguard.server.routes."), route.path
            assert "<locals>" not in endpoint.__qualname__, route.path


def test_documented_operations_are_the_routers_operations() -> None:
    documented = {
        (method.upper(), path)
        for path, operations in _bare_app().openapi()["paths"].items()
        for method in operations
    }
    served = {
        (method, route.path_format)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }
    assert documented == served
    assert ("POST", "/device/v1/checkin") in documented
    assert ("PUT", "/api/v1/repository/targets") in documented


def test_each_app_answers_from_its_own_state() -> None:
    first, second = _bare_app(), _bare_app()
    metrics = cast(ServerMetrics, first.state.metrics)
    metrics.checkins.labels("update").inc(7)
    seen = TestClient(first).get("/metrics").text
    other = TestClient(second).get("/metrics").text
    assert 'otaguard_checkins_total{outcome="update"} 7.0' in seen
    assert 'outcome="update"} 7.0' not in other
    assert TestClient(second).get("/healthz").json()["status"] == "ok"

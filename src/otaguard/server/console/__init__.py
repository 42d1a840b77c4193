"""The web console: server-rendered pages for operators, served by ``otaguard server``.

Sides: runs on the server, next to the API and with the same rules. It reads and changes
nothing the API cannot: pages call the ``Store``/``IdentityStore`` methods the API routes call,
every route is an entry of ``identity/rbac.py``'s ``ROUTE_ACTIONS`` decided by the same
``Principal.decide``, and every change is audited by the same ``AuditMiddleware``. It imports
``server`` helpers, ``identity``, ``repo`` and ``fleet``; never the device side.

Map: ``session.py`` (cookie, CSRF, the per-request check), ``headers.py`` (CSP and friends),
``render.py`` (Jinja2, error pages), ``*_routes.py`` (the pages), pure helpers ``fleet.py``,
``charts.py``, ``actions.py``, ``phases.py``, ``timeline.py``, ``paging.py``, ``timefmt.py``,
``progress_cache.py``;
``templates/`` and ``static/`` (our own small CSS and JS: no library, no CDN, no build step).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from otaguard.server.console import (
    admin_routes,
    alert_routes,
    auth_routes,
    deployment_routes,
    fleet_routes,
    rollout_routes,
)
from otaguard.server.console.headers import ConsoleHeaders
from otaguard.server.console.progress_cache import TtlCache
from otaguard.server.console.render import compile_templates

#: every console router, in the order they are matched
CONSOLE_ROUTERS: tuple[APIRouter, ...] = (
    auth_routes.router,
    fleet_routes.router,
    deployment_routes.router,
    rollout_routes.router,
    alert_routes.router,
    admin_routes.router,
)


def install_console(app: FastAPI) -> None:
    """Serve the console under ``/console`` with its security headers."""
    compile_templates()
    app.state.console_progress = TtlCache()
    for router in CONSOLE_ROUTERS:
        app.include_router(router)
    app.add_middleware(ConsoleHeaders)

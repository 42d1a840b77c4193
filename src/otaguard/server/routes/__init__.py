"""The HTTP routes of the server, one module per resource, each an ``APIRouter`` of plain
module-level handlers that reach the server context through ``server/state.py``'s
dependencies. ``server/app.py`` includes them, in the order of ``ROUTERS``.

Sides: runs on the server; imports ``server`` helpers, ``repo``, ``identity``, ``director``
and the store facade, never the device side (``agent``, ``device``).
"""

from fastapi import APIRouter

from otaguard.server.routes import (
    api_docs,
    deployments,
    device_api,
    devices,
    groups,
    identity,
    monitoring,
    operations,
    pki,
    releases,
    repository,
    rollouts,
)

#: every router of the application, in the order they are matched and documented
ROUTERS: tuple[APIRouter, ...] = (
    device_api.router,
    monitoring.device_router,
    repository.tuf_router,
    repository.router,
    releases.router,
    devices.router,
    deployments.router,
    groups.router,
    rollouts.router,
    monitoring.router,
    identity.router,
    pki.device_router,
    pki.router,
    pki.ca_router,
    operations.router,
    api_docs.router,
)

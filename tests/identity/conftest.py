"""An in-process server (no TLS) with one user per role, for the identity tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from otaguard.identity.rbac import Role
from otaguard.server.app import create_app
from otaguard.server.context import ServerContext, ServerSettings

PASSWORD = "correct horse battery"


@dataclass
class World:
    ctx: ServerContext
    client: TestClient
    tokens: dict[str, str]  # role name -> API token of a user holding only that role

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ctx = ServerContext.open(ServerSettings(data_dir=tmp_path / "server"))
    app = create_app(ctx)
    tokens = {}
    for role in Role:
        ctx.identity.add_user(f"u-{role.value}", [role.value], PASSWORD)
        tokens[role.value] = ctx.identity.create_token(f"u-{role.value}", scopes=["*"]).token
    with TestClient(app) as client:
        yield World(ctx, client, tokens)
    ctx.close()

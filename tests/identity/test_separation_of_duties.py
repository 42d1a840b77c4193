"""Separation of duties against one admin (issue 11 item 5): every way around the two-person
rule we could think of, each with its control (the honest path that must still work)."""

from __future__ import annotations

import pytest

from otaguard.errors import ConflictError, ForbiddenError
from otaguard.identity.rbac import Principal, Role
from otaguard.store.models import Deployment, Release

from .conftest import PASSWORD, World

NEW = "another long password"


def _pending(world: World, created_by: str) -> int:
    """A deployment awaiting approval, created by ``created_by``."""
    with world.ctx.store.session() as s:
        if s.get(Release, "fw-1") is None:
            s.add(
                Release(target_name="fw-1", version="1", hardware=["hw"], sha256="0" * 64, length=1)
            )
            s.flush()
        dep = Deployment(
            name="prod",
            target_name="fw-1",
            selector={},
            state="awaiting_approval",
            created_by=created_by,
        )
        s.add(dep)
        s.flush()
        return dep.id


def _login(world: World, name: str, password: str = PASSWORD) -> dict[str, str]:
    r = world.client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _approve(world: World, dep: int, h: dict[str, str]) -> tuple[int, str]:
    r = world.client.post(f"/api/v1/deployments/{dep}/approve", headers=h)
    return r.status_code, r.json().get("detail", "")


def _refused(world: World, dep: int, h: dict[str, str], why: str) -> None:
    status, detail = _approve(world, dep, h)
    assert status == 403, detail
    assert why in detail


def _own_password(world: World, name: str) -> dict[str, str]:
    """``name`` sets their own password (as a real user does once) and logs in."""
    h = _login(world, name)
    r = world.client.put("/api/v1/auth/password", headers=h, json={"current": PASSWORD, "new": NEW})
    assert r.status_code == 204, r.text
    return _login(world, name, NEW)


def test_control_an_approver_with_their_own_password_approves(world: World) -> None:
    dep = _pending(world, "u-deployer")
    assert _approve(world, dep, _own_password(world, "u-approver"))[0] == 200


def test_password_set_by_someone_else_cannot_approve(world: World) -> None:
    dep = _pending(world, "u-deployer")
    _refused(world, dep, _login(world, "u-approver"), "set by someone else")


def test_admin_reset_then_login_as_approver_is_refused(world: World) -> None:
    admin = world.auth("admin")
    _own_password(world, "u-approver")  # the real approver had their own password
    # the admin's own deployer account (created by this admin)
    r = world.client.post(
        "/api/v1/users", headers=admin, json={"name": "puppet-dep", "roles": ["deployer"]}
    )
    assert r.status_code == 201
    dep = _pending(world, "puppet-dep")
    r = world.client.put(
        "/api/v1/users/u-approver/password", headers=admin, json={"password": PASSWORD}
    )
    assert r.status_code == 200
    # the reset revoked the approver's tokens
    assert (
        world.client.get("/api/v1/auth/tokens", headers=world.auth("approver")).status_code == 401
    )
    h = _login(world, "u-approver")
    _refused(world, dep, h, "set by someone else")
    # ... and after "setting their own" password (the admin knows the current one) still not
    h = _own_password(world, "u-approver")
    _refused(world, dep, h, "reset by u-admin")


def test_admin_grants_self_deployer_resets_approver_and_approves(world: World) -> None:
    admin = world.auth("admin")
    _own_password(world, "u-approver")
    r = world.client.put(
        "/api/v1/users/u-admin/roles", headers=admin, json={"roles": ["admin", "deployer"]}
    )
    assert r.status_code == 200
    dep = _pending(world, "u-admin")
    world.client.put(
        "/api/v1/users/u-approver/password", headers=admin, json={"password": PASSWORD}
    )
    _refused(world, dep, _own_password(world, "u-approver"), "manages the approver")


def test_second_account_for_oneself_cannot_approve_own_deployment(world: World) -> None:
    admin = world.auth("admin")
    world.client.put(
        "/api/v1/users/u-admin/roles", headers=admin, json={"roles": ["admin", "deployer"]}
    )
    r = world.client.post(
        "/api/v1/users",
        headers=admin,
        json={"name": "alt-me", "roles": ["approver"], "password": PASSWORD},
    )
    assert r.status_code == 201
    dep = _pending(world, "u-admin")
    _refused(world, dep, _own_password(world, "alt-me"), "manages the approver")


def test_role_grant_to_self_does_not_let_the_creator_approve(world: World) -> None:
    admin = world.auth("admin")
    world.client.put(
        "/api/v1/users/u-admin/roles",
        headers=admin,
        json={"roles": ["admin", "deployer", "approver"]},
    )
    dep = _pending(world, "u-admin")
    _refused(world, dep, _own_password(world, "u-admin"), "creator")


def test_approver_who_manages_the_creator_cannot_approve(world: World) -> None:
    """An approver who created (or reset) the deployer's account could act as the deployer."""
    ident = world.ctx.identity
    ident.set_roles("u-admin", ["admin", "approver"], by="u-admin")
    ident.add_user("dep2", ["deployer"], by="u-admin")
    dep = _pending(world, "dep2")
    _refused(world, dep, _own_password(world, "u-admin"), "manages the account")


def test_token_made_for_another_name_is_the_callers_own(world: World) -> None:
    """``POST /auth/tokens`` has no user field: a creator cannot mint a token for someone
    else (the server host's CLI can: its operator holds the database anyway)."""
    h = world.auth("deployer")
    r = world.client.post(
        "/api/v1/auth/tokens",
        headers=h,
        json={"scopes": ["*"], "ttl_seconds": 600, "user": "u-approver"},
    )
    assert r.status_code == 422  # unknown field refused
    r = world.client.post(
        "/api/v1/auth/tokens", headers=h, json={"scopes": ["*"], "ttl_seconds": 600}
    )
    tok = r.json()["token"]
    assert world.ctx.identity.authenticate(tok).name == "u-deployer"


def test_store_level_rule_with_principals(world: World) -> None:
    """The rule holds below the API too (the CLI and any other caller)."""
    ident = world.ctx.identity
    dep = _pending(world, "u-deployer")
    me = Principal("u-approver", frozenset({Role.APPROVER}), frozenset({"*"}))
    with pytest.raises(ForbiddenError, match="set by someone else"):
        ident.approve(dep, me)
    ident.change_own_password("u-approver", PASSWORD, NEW)
    ident.approve(dep, me)
    assert ident.approval(dep) == "u-approver"


@pytest.mark.parametrize("name", ["admin", "Admin", "anonymous", "bootstrap"])
def test_reserved_names_cannot_be_created(world: World, name: str) -> None:
    with pytest.raises(ConflictError, match="reserved"):
        world.ctx.identity.add_user(name, ["viewer"])
    r = world.client.post(
        "/api/v1/users", headers=world.auth("admin"), json={"name": name, "roles": ["viewer"]}
    )
    assert r.status_code == 409


def test_bootstrap_token_identity_cannot_be_claimed_or_demoted(world: World) -> None:
    """Before: an account named ``admin`` (viewer) demoted the bootstrap token to viewer;
    one with a password made its holder the bootstrap identity. Now the name is refused,
    and even a row of that name in the database does not change the token's rights."""
    boot = {"Authorization": f"Bearer {world.ctx.admin_token}"}
    from otaguard.store.identity_models import User

    with world.ctx.store.session() as s:  # e.g. a database from before the rule
        s.add(User(name="admin", roles=["viewer"], managed_by=[], reset_by=[]))
    assert world.client.get("/api/v1/users", headers=boot).status_code == 200
    assert world.ctx.identity.authenticate(world.ctx.admin_token).roles == frozenset({Role.ADMIN})

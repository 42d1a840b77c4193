"""Operators: argon2 password login, scoped expiring tokens, lock-out and rate limits."""

from __future__ import annotations

import datetime as dt

import pytest

from otaguard.errors import AuthError, ConfigError
from otaguard.identity.passwords import LockoutPolicy, hash_password, verify_password
from otaguard.store.identity_models import User

from .conftest import PASSWORD, World


def test_password_is_stored_as_argon2id_and_verifies(world: World) -> None:
    with world.ctx.store.session(write=False) as s:
        u = s.get(User, "u-viewer")
        assert u is not None
        stored = u.password_hash
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert "m=65536" in stored  # memory-hard: 64 MiB
    assert PASSWORD not in stored
    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, PASSWORD + "x")
    assert not verify_password(None, PASSWORD)
    with pytest.raises(ConfigError, match="at least"):
        hash_password("short")


def test_login_returns_a_working_token_and_is_audited(world: World) -> None:
    r = world.client.post(
        "/api/v1/auth/login", json={"username": "u-deployer", "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    h = {"Authorization": f"Bearer {token}"}
    assert world.client.get("/api/v1/deployments", headers=h).status_code == 200
    assert world.client.get("/api/v1/users", headers=h).status_code == 403
    entries = list(world.ctx.identity.audit_entries())
    logins = [e for e in entries if e.action == "auth.login"]
    assert logins[-1].actor == "user:u-deployer"
    assert logins[-1].outcome == "ok"
    assert token not in "".join(e.to_json() for e in entries)  # never the secret


def test_repeated_failures_lock_the_account(world: World) -> None:
    world.client.app.state.auth_failures.limit = 10**6  # test the account lock alone
    bad = {"username": "u-viewer", "password": "wrong password!!"}
    for _ in range(5):
        assert world.client.post("/api/v1/auth/login", json=bad).status_code == 401
    good = {"username": "u-viewer", "password": PASSWORD}
    r = world.client.post("/api/v1/auth/login", json=good)
    assert r.status_code == 401
    assert "locked" in r.json()["detail"]
    failed = [e for e in world.ctx.identity.audit_entries() if e.action == "auth.login"]
    assert [e.outcome for e in failed].count("failed") == 6
    # an admin resetting the password unlocks it
    world.ctx.identity.set_password("u-viewer", PASSWORD)
    assert world.client.post("/api/v1/auth/login", json=good).status_code == 200


def test_lockout_policy_escalates_and_expires() -> None:
    p = LockoutPolicy(max_failures=3, lock_for=dt.timedelta(minutes=10))
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert p.locked_until_after_failure(2, now) is None
    assert p.locked_until_after_failure(3, now) == now + dt.timedelta(minutes=10)
    assert p.locked_until_after_failure(4, now) is None
    assert p.locked_until_after_failure(6, now) == now + dt.timedelta(minutes=20)
    assert p.locked_until_after_failure(300, now) == now + p.max_lock


def test_lock_expires(world: World) -> None:
    ident = world.ctx.identity
    now = dt.datetime.now(dt.UTC)
    for _ in range(5):
        with pytest.raises(AuthError):
            ident.login("u-admin", "nope nope nope", now=now)
    with pytest.raises(AuthError, match="locked"):
        ident.login("u-admin", PASSWORD, now=now)
    later = now + dt.timedelta(minutes=16)
    assert ident.login("u-admin", PASSWORD, now=later).token


def test_client_address_is_rate_limited_across_accounts(world: World) -> None:
    world.client.app.state.auth_failures.limit = 3
    for i in range(3):
        r = world.client.post(
            "/api/v1/auth/login", json={"username": f"nobody{i}", "password": "x"}
        )
        assert r.status_code == 401
    r = world.client.post("/api/v1/auth/login", json={"username": "u-admin", "password": PASSWORD})
    assert r.status_code == 429
    # bad bearer tokens count too
    r = world.client.get("/api/v1/releases", headers={"Authorization": "Bearer otg_guess"})
    assert r.status_code == 429


def test_tokens_expire_and_can_be_revoked(world: World) -> None:
    ident = world.ctx.identity
    issued = ident.create_token("u-viewer", scopes=["*"], ttl=dt.timedelta(hours=1))
    assert ident.authenticate(issued.token).name == "u-viewer"
    with pytest.raises(AuthError, match="expired"):
        ident.authenticate(issued.token, now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    h = {"Authorization": f"Bearer {issued.token}"}
    listed = world.client.get("/api/v1/auth/tokens", headers=h).json()
    assert issued.id in {t["id"] for t in listed}
    # another user cannot revoke it; its owner can
    other = world.auth("admin")
    assert world.client.delete(f"/api/v1/auth/tokens/{issued.id}", headers=other).status_code == 404
    assert world.client.delete(f"/api/v1/auth/tokens/{issued.id}", headers=h).status_code == 204
    r = world.client.get("/api/v1/releases", headers=h)
    assert r.status_code == 401
    assert "revoked" in r.json()["detail"]


def test_token_api_scopes_and_lifetime(world: World) -> None:
    r = world.client.post(
        "/api/v1/auth/tokens",
        json={"scopes": ["release.read"], "ttl_seconds": 60, "label": "ci"},
        headers=world.auth("release_manager"),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert expires - dt.datetime.now(dt.UTC) < dt.timedelta(seconds=61)
    h = {"Authorization": f"Bearer {body['token']}"}
    assert world.client.get("/api/v1/releases", headers=h).status_code == 200
    assert world.client.put("/api/v1/repository/root", headers=h, content=b"{}").status_code == 403
    bad = world.client.post(
        "/api/v1/auth/tokens", json={"scopes": ["nope"]}, headers=world.auth("viewer")
    )
    assert bad.status_code == 400


def test_user_management_by_admin(world: World) -> None:
    h = world.auth("admin")
    r = world.client.post(
        "/api/v1/users",
        json={"name": "dora", "roles": ["deployer"], "password": "a long enough passphrase"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    assert r.json()["roles"] == ["deployer"]
    r = world.client.put("/api/v1/users/dora/roles", json={"roles": ["viewer"]}, headers=h)
    assert r.json()["roles"] == ["viewer"]
    bad = world.client.put("/api/v1/users/dora/roles", json={"roles": ["god"]}, headers=h)
    assert bad.status_code == 400
    audit = [e for e in world.ctx.identity.audit_entries() if e.actor == "user:u-admin"]
    assert [e.action for e in audit] == ["user.manage", "user.manage", "user.manage"]
    assert [e.outcome for e in audit] == ["ok", "ok", "http_400"]

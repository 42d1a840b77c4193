"""Login under attack (issue 11 items 3 and 6): the password check holds no database write
lock; every refusal costs exactly one argon2 verification and says the same thing; an
attacker's address cannot lock a user out of another address."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import text

from otaguard.errors import AuthError
from otaguard.identity import passwords
from otaguard.identity.login_store import REFUSED, Logins, throttled
from otaguard.identity.passwords import LockoutPolicy

from .conftest import PASSWORD, World

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


class CountingHasher:
    """The real argon2 hasher, counting verifications; ``during`` runs inside each one."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.verifications = 0
        self.during: Any = None

    def verify(self, stored: str, password: str) -> bool:
        self.verifications += 1
        if self.during is not None:
            self.during()
        return bool(self.real.verify(stored, password))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher(passwords._hasher)
    monkeypatch.setattr(passwords, "_hasher", counting)
    return counting


def test_password_is_verified_outside_any_write_transaction(
    world: World, hasher: CountingHasher
) -> None:
    """Before: ``login`` verified inside its write transaction, so every other writer (device
    check-ins included) waited ~90 ms per concurrent login. Here a writer that refuses to wait
    runs while the password is being verified."""
    wrote: list[bool] = []

    def another_write() -> None:
        with world.ctx.store.session(wait=False) as s:  # StoreBusyError if the lock is held
            s.execute(text("UPDATE users SET disabled = disabled WHERE name = 'nobody'"))
        wrote.append(True)

    hasher.during = another_write
    with pytest.raises(AuthError):
        world.ctx.identity.login("u-viewer", "wrong password!!", client="10.0.0.1")
    assert world.ctx.identity.login("u-viewer", PASSWORD, client="10.0.0.1").token
    assert wrote == [True, True]


def test_every_refusal_costs_one_verification_and_says_the_same(
    world: World, hasher: CountingHasher
) -> None:
    ident = world.ctx.identity
    ident.add_user("tokens-only", ["viewer"])  # no password
    with world.ctx.store.session() as s:
        s.execute(text("UPDATE users SET disabled = 1 WHERE name = 'u-auditor'"))
    for _ in range(5):  # lock (u-admin, 10.9.9.9)
        with pytest.raises(AuthError):
            ident.login("u-admin", "wrong password!!", client="10.9.9.9")
    cases = {
        "unknown name": ("no-such-user", PASSWORD),
        "wrong password": ("u-viewer", "wrong password!!"),
        "locked": ("u-admin", PASSWORD),
        "disabled": ("u-auditor", PASSWORD),
        "no password": ("tokens-only", PASSWORD),
    }
    for case, (name, password) in cases.items():
        hasher.verifications = 0
        with pytest.raises(AuthError) as refused:
            ident.login(name, password, client="10.9.9.9")
        assert hasher.verifications == 1, case
        assert str(refused.value) == REFUSED, case


def test_an_attacker_address_cannot_lock_out_a_user_elsewhere(world: World) -> None:
    ident = world.ctx.identity
    for _ in range(6):
        with pytest.raises(AuthError):
            ident.login("u-approver", "wrong password!!", client="203.0.113.66")
    with pytest.raises(AuthError):  # the attacker's address is locked out, right password or not
        ident.login("u-approver", PASSWORD, client="203.0.113.66")
    assert ident.login("u-approver", PASSWORD, client="192.0.2.10").token


def test_account_wide_lock_spares_addresses_that_logged_in_before(world: World) -> None:
    logins = Logins(world.ctx.store, LockoutPolicy(max_failures=100, account_max_failures=3))
    assert logins.login("u-viewer", PASSWORD, client="192.0.2.10").token  # the usual address
    for i in range(3):  # three addresses, one failure each: the account-wide lock
        with pytest.raises(AuthError):
            logins.login("u-viewer", "wrong password!!", client=f"198.51.100.{i}")
    with pytest.raises(AuthError):  # a new address waits (bounds distributed guessing)
        logins.login("u-viewer", PASSWORD, client="198.51.100.200")
    assert logins.login("u-viewer", PASSWORD, client="192.0.2.10").token


def test_throttle_rule() -> None:
    later = NOW + dt.timedelta(minutes=1)
    assert not throttled(None, None, False, NOW)
    assert throttled(None, later, True, NOW)  # this address is locked out
    assert throttled(later, None, False, NOW)  # account lock, unknown address
    assert not throttled(later, None, True, NOW)  # account lock spares a known address
    assert not throttled(NOW, NOW, False, NOW)  # expired
    p = LockoutPolicy(account_max_failures=4, account_lock_for=dt.timedelta(minutes=1))
    assert p.account_locked_until_after_failure(3, NOW) is None
    assert p.account_locked_until_after_failure(4, NOW) == NOW + dt.timedelta(minutes=1)
    assert p.account_locked_until_after_failure(5, NOW) is None


def test_a_limited_address_with_a_valid_token_is_served(world: World) -> None:
    """Before: a rate-limited address got 429 even with a valid token. The limit counts
    failures only; a valid token is checked first (one hash lookup) and served. 429s are
    audited once per address and window."""
    world.client.app.state.auth_failures.limit = 2
    guess = {"Authorization": "Bearer otg_guess"}
    for _ in range(2):
        assert world.client.get("/api/v1/releases", headers=guess).status_code == 401
    for _ in range(5):
        assert world.client.get("/api/v1/releases", headers=guess).status_code == 429
    assert world.client.get("/api/v1/releases", headers=world.auth("viewer")).status_code == 200
    world.ctx.refusals.flush()
    limited = [e for e in world.ctx.identity.audit_entries() if e.action == "auth.rate_limited"]
    assert [e.detail["count"] for e in limited] == [1, 5]

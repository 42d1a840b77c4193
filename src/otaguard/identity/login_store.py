"""Password login and a user's own password change, with lock-out per (account, address).

Why a module of its own: login is the one place an attacker can make the server do expensive
work (argon2id, ~90 ms, 64 MiB) for free, and its rules must hold under that load:

- the password is verified **outside any database transaction** (a read, then the verify, then
  the outcome in one short write), so concurrent bad logins never hold the write lock that
  check-ins and every other write need;
- every refusal costs the same: exactly one argon2 verification, against a dummy hash for an
  unknown, locked, disabled or password-less name, and the same message, so neither timing
  nor text tells which user names exist or are locked;
- lock-out is per (account, client address): failures from one address lock that address out
  of that account only; a slower account-wide lock (``LockoutPolicy.account_*``) bounds
  guessing from many addresses but never applies to an address that has logged in to the
  account before, so an attacker cannot lock a user out of their usual address;
- the verification itself runs on ``identity/verify_gate.py``'s few low-priority threads with
  a bounded wait (``LoginBusyError`` past it), so a flood of logins from many addresses cannot
  take every core and the memory from the rest of the server.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from otaguard.errors import AuthError
from otaguard.identity.operator_store import LOGIN_TOKEN_TTL, IssuedToken, issue_token
from otaguard.identity.passwords import (
    LockoutPolicy,
    hash_password,
    is_locked,
    verify_password,
)
from otaguard.identity.rbac import ALL_SCOPES
from otaguard.identity.verify_gate import VerifyGate, shared_gate
from otaguard.store.base import utcnow
from otaguard.store.engine import Database
from otaguard.store.identity_models import LoginThrottle, User

#: the one answer to every refused login (no oracle for existing or locked names)
REFUSED = "wrong user name or password, or locked after repeated failed logins; try later"


@dataclass(frozen=True)
class _Seen:
    """What the read before the password check found (no transaction held afterwards)."""

    exists: bool
    password_hash: str | None  # None: refuse whatever the password (still one verify)


def throttled(
    user_locked_until: dt.datetime | None,
    address_locked_until: dt.datetime | None,
    address_known: bool,
    now: dt.datetime,
) -> bool:
    """The lock-out rule (pure): this address is locked out of this account, or the account
    is locked for everyone but addresses that have logged in to it before."""
    if is_locked(address_locked_until, now):
        return True
    return is_locked(user_locked_until, now) and not address_known


class Logins:
    """Login and own-password change on one ``Database``."""

    def __init__(
        self, db: Database, lockout: LockoutPolicy, gate: VerifyGate | None = None
    ) -> None:
        self.db = db
        self.lockout = lockout
        self._gate = gate

    @property
    def gate(self) -> VerifyGate:
        if self._gate is None:
            self._gate = shared_gate()
        return self._gate

    def _read(self, name: str, client: str, now: dt.datetime) -> _Seen:
        with self.db.session(write=False) as s:
            u = s.get(User, name)
            if u is None:
                return _Seen(False, None)
            t = s.get(LoginThrottle, (name, client[:64]))
            locked = throttled(
                u.locked_until,
                t.locked_until if t else None,
                t is not None and t.last_success is not None,
                now,
            )
            usable = not locked and not u.disabled
            return _Seen(True, u.password_hash if usable else None)

    def login(
        self,
        name: str,
        password: str,
        *,
        client: str = "unknown",
        scopes: list[str] | None = None,
        ttl: dt.timedelta = LOGIN_TOKEN_TTL,
        now: dt.datetime | None = None,
    ) -> IssuedToken:
        """Check a password (one argon2 verification, outside any transaction); on success
        issue a token. A failure counts towards the lock-out of (``name``, ``client``) and of
        the account.

        Raises:
            AuthError: refused (``REFUSED``, whatever the reason: unknown name, wrong password,
                disabled, locked); the failure was counted. Retry after the lock-out ends.
            LoginBusyError: too many password checks in progress; nothing was checked or
                counted (retry shortly).
            ConfigError: ``scopes`` names an unknown scope (nothing issued).
        """
        now = now or utcnow()
        with self.gate.admitted():  # a busy refusal costs no database read either
            seen = self._read(name, client, now)
            ok = self.gate.verify(verify_password, seen.password_hash, password)
        if not seen.exists:
            raise AuthError(REFUSED)
        with self.db.session() as s:  # short: the outcome only
            u = s.get(User, name, with_for_update=True)
            if u is None:
                raise AuthError(REFUSED)
            key = (name, client[:64])
            t = s.get(LoginThrottle, key, with_for_update=True)
            if t is None:
                t = LoginThrottle(user_name=name, client=client[:64], failures=0)
                s.add(t)
            if ok:
                t.failures, t.locked_until, t.last_success = 0, None, now
                u.failed_logins, u.locked_until = 0, None
                return issue_token(s, u.name, scopes or [ALL_SCOPES], ttl, "login", now)
            self._count_failure(u, t, now)
        raise AuthError(REFUSED)

    def _count_failure(self, u: User, t: LoginThrottle, now: dt.datetime) -> None:
        t.failures += 1
        t.locked_until = self.lockout.locked_until_after_failure(t.failures, now) or t.locked_until
        u.failed_logins += 1
        u.locked_until = (
            self.lockout.account_locked_until_after_failure(u.failed_logins, now) or u.locked_until
        )

    def change_own_password(
        self, name: str, current: str, new: str, *, client: str = "unknown"
    ) -> None:
        """A user replaces their password, proving the current one (one verification, outside
        any transaction, counted like a login). Clears "set by someone else", so the user may
        approve again (docs/SECURITY.md, separation of duties).

        Raises:
            AuthError: refused (``REFUSED``); counted towards lock-out.
            ConfigError: the new password is too weak (nothing changed).
        """
        now = utcnow()
        new_hash = hash_password(new)
        seen = self._read(name, client, now)
        ok = self.gate.run(verify_password, seen.password_hash, current)
        with self.db.session() as s:
            u = s.get(User, name, with_for_update=True)
            if u is None or not ok:
                if u is not None:
                    t = s.get(LoginThrottle, (name, client[:64]), with_for_update=True)
                    if t is None:
                        t = LoginThrottle(user_name=name, client=client[:64], failures=0)
                        s.add(t)
                    self._count_failure(u, t, now)
                failed = True
            else:
                u.password_hash = new_hash
                u.password_set_by_other = False
                failed = False
        if failed:
            raise AuthError(REFUSED)

"""Operator passwords (argon2id, memory-hard) and the lock-out rule after failed logins.

Hashing uses ``argon2-cffi``'s ``PasswordHasher`` (RFC 9106 low-memory profile: 64 MiB, 3
passes); the hash string carries its parameters, so stronger settings later still verify old
hashes and ``needs_rehash`` tells when to upgrade one.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from otaguard.errors import ConfigError

MIN_PASSWORD_LENGTH = 12
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the user does not exist, so unknown names take as long as wrong passwords.
    Made on first use: hashing takes 64 MiB, which a process that never checks a password
    (the device agent shares the CLI) should not pay at import."""
    return _hasher.hash("otaguard: no such user")


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    check_password_strength(password)
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant-work check: a missing hash (no such user, no password) still costs a verify."""
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


@dataclass(frozen=True)
class LockoutPolicy:
    """``max_failures`` consecutive failed logins from one address lock that address out of
    the account for ``lock_for``; each further lock doubles, up to ``max_lock``.
    ``account_max_failures`` consecutive failures from all addresses together lock the account
    for ``account_lock_for`` (each time that many more fail), except for addresses that have
    logged in to it before (``identity/login_store.py``)."""

    max_failures: int = 5
    lock_for: dt.timedelta = dt.timedelta(minutes=15)
    max_lock: dt.timedelta = dt.timedelta(hours=24)
    account_max_failures: int = 50
    account_lock_for: dt.timedelta = dt.timedelta(minutes=1)

    def account_locked_until_after_failure(
        self, failures: int, now: dt.datetime
    ) -> dt.datetime | None:
        """``failures`` (account-wide, this one counted). None: not locked (yet)."""
        if failures < self.account_max_failures or failures % self.account_max_failures:
            return None
        return now + self.account_lock_for

    def locked_until_after_failure(self, failures: int, now: dt.datetime) -> dt.datetime | None:
        """``failures`` counts this one. None: not locked (yet)."""
        if failures < self.max_failures:
            return None
        rounds = min(failures // self.max_failures - 1, 32)
        if failures % self.max_failures:
            return None
        lock: dt.timedelta = min(self.lock_for * (2**rounds), self.max_lock)
        return now + lock


def is_locked(locked_until: dt.datetime | None, now: dt.datetime) -> bool:
    return locked_until is not None and now < locked_until

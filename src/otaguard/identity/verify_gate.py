"""Password verifications on a few low-priority threads, with a bounded wait.

Why: an argon2id verification costs ~90 ms of CPU (several threads, one per lane) and 64 MiB,
and a login attempt costs the attacker nothing. Unbounded, N concurrent bad logins from N
addresses (each under its address limit) take N x 64 MiB and every core, and the server's event
loop -- TLS, ``/healthz``, device check-ins -- waits for the CPU behind them (issue 11). So:

- at most ``workers`` verifications run at once (default: half the CPUs, at least one): CPU and
  memory taken by logins are bounded;
- the workers run at a lower CPU priority (Linux nice +10, per thread; the argon2 lane threads
  they start inherit it), so when the CPU is short the kernel runs the event loop first;
- at most ``max_waiting`` more logins wait for a worker; past that a login is refused at once
  with ``LoginBusyError`` (429), before any work and whatever the name, so the refusal tells
  nothing about accounts. A legitimate operator may then have to retry during a flood:
  logins give way to the service, not the other way round.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from otaguard.errors import LoginBusyError

T = TypeVar("T")
#: nice value of the verifier threads (higher: less CPU when the CPU is short)
NICE = 10
MAX_WAITING = 16


def default_workers() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


def _lower_priority(nice: int) -> None:
    """Thread initializer: lower this thread's CPU priority (Linux: per thread id)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
    except (OSError, AttributeError):  # not Linux, or not allowed: run at normal priority
        pass


class VerifyGate:
    """Runs password verifications (``run``) on ``workers`` threads at ``nice``, with at most
    ``max_waiting`` callers waiting."""

    def __init__(
        self, workers: int | None = None, max_waiting: int = MAX_WAITING, nice: int = NICE
    ) -> None:
        self.workers = workers or default_workers()
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(
            self.workers,
            thread_name_prefix="otaguard-verify",
            initializer=_lower_priority,
            initargs=(nice,),
        )
        self._admitted = threading.BoundedSemaphore(self.workers + max_waiting)

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold one of the ``workers + max_waiting`` places for the block (a login's read and
        verification), or refuse at once.

        Raises:
            LoginBusyError: every place is taken; nothing was done (retry shortly).
        """
        if not self._admitted.acquire(blocking=False):
            raise LoginBusyError("too many logins in progress; try again shortly")
        try:
            yield
        finally:
            self._admitted.release()

    def verify(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on a verifier thread (inside ``admitted``); the caller waits for it."""
        return self._executor.submit(fn, *args).result()

    def run(self, fn: Callable[..., T], *args: object) -> T:
        """``verify`` inside ``admitted``.

        Raises:
            LoginBusyError: as ``admitted``.
        """
        with self.admitted():
            return self.verify(fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_shared: VerifyGate | None = None
_shared_lock = threading.Lock()


def shared_gate() -> VerifyGate:
    """The process's gate (the CPU is the process's, whichever store asks), made on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = VerifyGate()
        return _shared

"""Password checks cannot take the server's CPU and memory (issue 11, /healthz under a login
flood): at most ``workers`` at once on lower-priority threads, a bounded wait, and past it an
immediate 429 ``login_busy`` that checks nothing, counts towards no lock-out and is audited
once per address and window."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from otaguard.errors import LoginBusyError
from otaguard.identity.verify_gate import NICE, VerifyGate

from .conftest import PASSWORD, World


def _occupy(gate: VerifyGate, n: int) -> tuple[threading.Event, list[threading.Thread]]:
    """``n`` callers inside the gate, blocked until the event is set."""
    release = threading.Event()
    threads = [threading.Thread(target=gate.run, args=(release.wait,)) for _ in range(n)]
    for t in threads:
        t.start()
    return release, threads


def _admitted_when_full(gate: VerifyGate) -> bool:
    try:
        gate.run(lambda: None)
    except LoginBusyError:
        return False
    return True


def test_gate_admits_workers_plus_waiting_then_refuses_at_once() -> None:
    gate = VerifyGate(workers=1, max_waiting=2)
    try:
        assert gate.run(lambda a, b: a + b, 2, 3) == 5
        release, threads = _occupy(gate, 3)  # one running, two waiting
        deadline = time.monotonic() + 10
        while _admitted_when_full(gate):  # until all three are inside
            assert time.monotonic() < deadline
            time.sleep(0.01)
        start = time.monotonic()
        with pytest.raises(LoginBusyError, match="too many logins in progress"):
            gate.run(lambda: None)
        assert time.monotonic() - start < 0.5  # refused without waiting
        release.set()
        for t in threads:
            t.join(10)
        assert gate.run(lambda: "again") == "again"
    finally:
        gate.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_verifications_run_at_a_lower_cpu_priority() -> None:
    gate = VerifyGate(workers=1)
    try:
        here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        there = gate.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        assert there == max(here, NICE)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == here  # caller's
    finally:
        gate.close()


def test_a_busy_login_is_429_checks_nothing_and_counts_no_failure(world: World) -> None:
    gate = VerifyGate(workers=1, max_waiting=0)
    world.ctx.identity.logins._gate = gate
    body = {"username": "u-admin", "password": PASSWORD}
    try:
        assert world.client.post("/api/v1/auth/login", json=body).status_code == 200  # control
        release, threads = _occupy(gate, 1)
        deadline = time.monotonic() + 10
        while _admitted_when_full(gate):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for _ in range(3):
            r = world.client.post("/api/v1/auth/login", json=body)
            assert (r.status_code, r.json()["error"]) == (429, "login_busy")
        release.set()
        for t in threads:
            t.join(10)
        assert world.client.post("/api/v1/auth/login", json=body).status_code == 200
    finally:
        gate.close()
    assert not world.client.app.state.auth_failures.blocked("testclient", time.monotonic())
    world.ctx.refusals.flush()
    busy = [e for e in world.ctx.identity.audit_entries() if e.action == "auth.login.busy"]
    assert [e.detail["count"] for e in busy] == [1, 3]  # the first, then the window's summary
    failed = [
        e for e in world.ctx.identity.audit_entries()
        if e.action == "auth.login" and e.outcome == "failed"
    ]  # fmt: skip
    assert failed == []

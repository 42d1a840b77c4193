"""Attacks on the director's per-device assignments (Uptane-style), made by a compromised
server or a man in the middle swapping the assignment in a check-in reply:

* replayed assignment: an old, genuine assignment (to 1.5.0) replayed after the device moved
  on to 2.0.0, to downgrade it. Stopped by the assignment counter check (counter must exceed
  the last accepted one). Switched off (``min_counter`` 0), the device reinstalls 1.5.0.
* assignment for another device: a genuine assignment made for device sim-0002 handed to
  sim-0001. Stopped by the device-id binding check. Switched off (the check told the device is
  sim-0002), the device installs what was meant for another.
* expired assignment: a genuine assignment whose one-hour lifetime is over. Stopped by the
  assignment expiry check. Switched off (checked at the time it was made), the device installs.

Each ``..._without_...`` test switches its check off and shows the attack test then fails.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from kit.attacks import Scene, assert_refused
from otaguard.agent import acceptance
from otaguard.director.assignment import sign_assignment, verify_assignment
from otaguard.repo.roles import utcnow


def _inject(scene: Scene, assignment: bytes, dep: int) -> None:
    scene.mitm.on_request = scene.assignment_reply(assignment, dep)


def replay(scene: Scene) -> None:
    captured: list[bytes] = []

    def record(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path == "/device/v1/checkin":
            body = response.read()
            if b'"assignment":"' in body:
                captured.append(httpx.Response(200, content=body).json()["assignment"].encode())
        return response

    scene.mitm.on_response = record
    v15 = scene.release("1.5.0")
    scene.deploy(v15)
    scene.dev.run_until_settled()
    v2 = scene.release("2.0.0")
    scene.deploy(v2)
    scene.dev.run_until_settled()
    assert (scene.dev.version, scene.dev.slot) == ("2.0.0", "a")
    old, dep = captured[0], scene.deploy(v2)
    since = len(scene.events())
    _inject(scene, old, dep)
    scene.dev.run_until_settled()
    assert_refused(scene, since=since, reason="(replay)", version="2.0.0", slot="a")


def other_device(scene: Scene) -> None:
    v2 = scene.release("2.0.0")
    dep = scene.deploy(v2)
    theirs = sign_assignment(
        scene.ctx.director,
        device_id=scene.other.config.device_id,
        deployment_id=dep,
        counter=1,
        target=scene.ctx.repo.find_target(v2),
    )
    _inject(scene, theirs, dep)
    since = len(scene.events())
    scene.dev.run_until_settled()
    assert_refused(scene, since=since, reason="assignment is for device 'sim-0002'")


def expired(scene: Scene) -> None:
    v2 = scene.release("2.0.0")
    dep = scene.deploy(v2)
    stale = sign_assignment(
        scene.ctx.director,
        device_id=scene.dev.config.device_id,
        deployment_id=dep,
        counter=1,
        target=scene.ctx.repo.find_target(v2),
        now=utcnow() - dt.timedelta(hours=2),
    )
    _inject(scene, stale, dep)
    since = len(scene.events())
    scene.dev.run_until_settled()
    assert_refused(scene, since=since, reason="assignment expired at")


def _patch_verify(monkeypatch: pytest.MonkeyPatch, **override: Any) -> None:
    def lenient(data: bytes, key: Any, **kwargs: Any) -> Any:
        return verify_assignment(data, key, **{**kwargs, **override})

    monkeypatch.setattr(acceptance, "verify_assignment", lenient)


def test_replayed_assignment_is_refused(scene: Scene) -> None:
    replay(scene)


def test_replay_succeeds_without_counter_check(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_verify(monkeypatch, min_counter=0)
    with pytest.raises(AssertionError, match="left its image"):
        replay(scene)
    assert scene.dev.version == "1.5.0"


def test_assignment_for_another_device_is_refused(scene: Scene) -> None:
    other_device(scene)


def test_other_device_attack_succeeds_without_device_binding(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_verify(monkeypatch, device_id="sim-0002")
    with pytest.raises(AssertionError, match="left its image"):
        other_device(scene)


def test_expired_assignment_is_refused(scene: Scene) -> None:
    expired(scene)


def test_expired_attack_succeeds_without_expiry_check(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_verify(monkeypatch, now=utcnow() - dt.timedelta(hours=2))
    with pytest.raises(AssertionError, match="left its image"):
        expired(scene)

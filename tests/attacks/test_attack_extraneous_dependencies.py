"""Extraneous dependencies: in TUF's wording, metadata tells a client that the software it
wants needs other, unrelated (perhaps vulnerable but genuinely signed) software too. OTAGuard
has no dependency metadata: a device installs exactly one target, the one its assignment names
(``verify_assignment`` accepts exactly one), and the agent never installs anything else in the
repository. What remains is the director (a compromised server holding the director key)
assigning a genuine, maker-signed target the device did not ask for and cannot use: the
firmware of another hardware family.

Stopped by: the agent's hardware check (the target's maker-signed ``hardware`` list must name
the device's hardware) before anything is downloaded. With that check switched off (every
release made to claim the device's hardware) the device downloads and installs the foreign
image (the bootloader's own check then has to fall back): ``test_..._without_hardware_check``
shows this test then fails. The server side refuses such deployments too, so the attacker
swaps the assignment in the check-in reply.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from kit.attacks import Scene, assert_refused, replace_body
from otaguard.agent import acceptance
from otaguard.demo import HARDWARE
from otaguard.device.image import build_image
from otaguard.director.assignment import sign_assignment
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.roles import TARGETS


def attack(scene: Scene) -> None:
    d = scene.d
    assert d.repo is not None
    foreign = "other-board/firmware-9.0.img"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "img"
        path.write_bytes(build_image("9.0", "other-board", payload_size=4096))
        d.repo.add_target(path, foreign, ReleaseInfo("9.0", ("other-board",)))
    for s in d.maker_signers[TARGETS]:
        d.repo.sign(TARGETS, s)
    scene.api.publish(d.repo)
    v2 = scene.release("2.0.0")
    dep = scene.deploy(v2)  # a genuine deployment; the attacker swaps its assignment
    target = scene.ctx.repo.find_target(foreign)
    forged = sign_assignment(
        scene.ctx.director,
        device_id=scene.dev.config.device_id,
        deployment_id=dep,
        counter=1,
        target=target,
    )

    def swap(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path != "/device/v1/checkin":
            return response
        return replace_body(
            response,
            httpx.Response(
                200,
                json={
                    "action": "update",
                    "assignment": forged.decode(),
                    "deployment_id": dep,
                    "poll_interval": 5,
                },
            ).content,
        )

    scene.mitm.on_response = swap
    since = len(scene.events())
    scene.dev.run_until_settled()
    assert_refused(scene, since=since, reason=f"release is for other-board, not {HARDWARE}")


def test_foreign_hardware_target_is_refused(scene: Scene) -> None:
    attack(scene)


def test_attack_succeeds_without_hardware_check(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    class AnyHardware(ReleaseInfo):
        @classmethod
        def of_target(cls, target: Any) -> ReleaseInfo:
            info = ReleaseInfo.of_target(target)
            return ReleaseInfo(info.version, (*info.hardware, HARDWARE), info.security_version)

    monkeypatch.setattr(acceptance, "ReleaseInfo", AnyHardware)
    with pytest.raises(AssertionError, match="device installed"):
        attack(scene)

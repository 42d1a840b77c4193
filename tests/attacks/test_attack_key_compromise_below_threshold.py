"""Key compromise below threshold: the attacker stole ONE of the maker's two targets keys (the
targets threshold is 2) and controls the server (online keys, director). It signs targets naming
its image with the stolen key and deploys it.

Stopped by: the signature *threshold* (``VerificationResult.verified``: signatures from at
least ``threshold`` distinct keys the delegator names). With the threshold lowered to one
signature, the device installs the attacker's image and
``test_..._without_threshold`` shows this test then fails.
"""

from __future__ import annotations

import pytest
from tuf.api import _payload

from kit.attacks import Scene, assert_refused
from otaguard.repo.roles import TARGETS


def attack(scene: Scene) -> None:
    stolen = scene.d.maker_signers[TARGETS][0]
    evil = scene.forge_release("6.6.6", [stolen])
    since = len(scene.events())
    scene.deploy(evil)
    scene.dev.run_until_settled()
    assert_refused(scene, since=since, reason="targets was signed by 1/2 keys")


def test_one_stolen_targets_key_is_not_enough(scene: Scene) -> None:
    attack(scene)


def test_attack_succeeds_without_threshold(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        _payload.VerificationResult, "verified", property(lambda self: len(self.signed) >= 1)
    )
    with pytest.raises(AssertionError, match="left its image"):
        attack(scene)
    assert scene.dev.version == "6.6.6"

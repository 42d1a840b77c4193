"""Arbitrary software installation: an attacker who controls the update server (its database,
its online snapshot/timestamp keys and the director key) but holds none of the maker's targets
keys publishes targets metadata naming its own image, signed with a key of its own, and deploys
it.

Stopped by: the TUF signature-threshold check of targets against the keys root names
(``verify_delegate`` in ``tuf.ngclient``'s trusted metadata set, run by the agent's refresh).
With that check switched off (``verify_delegate`` made a no-op) the device installs and boots the
attacker's image, and ``test_..._without_signature_check`` shows this test then fails.
"""

from __future__ import annotations

import pytest
from tuf.api import _payload

from kit.attacks import Scene, assert_refused
from otaguard.crypto.keys import generate_signer


def attack(scene: Scene) -> None:
    evil = scene.forge_release("6.6.6", [generate_signer()])
    since = len(scene.events())
    scene.deploy(evil)
    scene.dev.run_until_settled()
    assert_refused(scene, since=since, reason="targets was signed by 0/2 keys")


def test_image_signed_by_an_unknown_key_is_refused(scene: Scene) -> None:
    attack(scene)


def test_attack_succeeds_without_signature_check(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_payload._DelegatorMixin, "verify_delegate", lambda *_a, **_k: None)
    with pytest.raises(AssertionError, match="left its image"):
        attack(scene)
    assert scene.dev.version == "6.6.6"

"""Malicious mirror: the mirror serving ``/tuf/targets/`` (a CDN, a proxy, a compromised
server) hands out the image with one byte changed, same length, so every transport-level check
passes. (Changed *metadata* from a mirror is the arbitrary-installation case: its signatures no
longer verify.)

Stopped by: the sha256 checks of the bytes against the maker-signed hash before the boot
environment switches to them: the hash computed while the bytes stream into the slot
(``UpdateAgent._stream_digest``) and the read-back of the whole slot from the medium
(``UpdateAgent._read_back``, agent/readback.py). With both switched off (the hashes made to come out as the signed one) the device
installs the tampered image (the bootloader's own image check then has to save it):
``test_..._without_hash_check`` shows this test then fails.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from kit.attacks import Scene, assert_refused, replace_body
from otaguard.agent import slot_stream


def attack(scene: Scene) -> None:
    v2 = scene.release("2.0.0")

    def mirror(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if not request.url.path.startswith("/tuf/targets/"):
            return response
        body = bytearray(response.read())
        body[len(body) // 2] ^= 0x01
        return replace_body(response, bytes(body))

    scene.mitm.on_response = mirror
    since = len(scene.events())
    scene.deploy(v2)
    scene.dev.run_until_settled()
    assert_refused(scene, since=since, event="failed", reason="does not match the maker-signed")


def test_tampered_image_from_a_mirror_is_never_installed(scene: Scene) -> None:
    attack(scene)


def test_attack_succeeds_without_hash_check(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    def signed_hash(_read: Any, _length: int) -> Any:
        return hashlib.sha256(scene.images[next(reversed(scene.images))])

    monkeypatch.setattr(
        slot_stream.SlotStream,
        "streamed_digest",
        lambda _self, _slot, _length: signed_hash(None, 0).hexdigest(),
    )
    monkeypatch.setattr(
        slot_stream.SlotStream,
        "read_back",
        lambda _self, _slot, _length: signed_hash(None, 0).hexdigest(),
    )
    with pytest.raises(AssertionError, match="device installed"):
        attack(scene)

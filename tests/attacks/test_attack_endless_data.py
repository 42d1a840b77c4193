"""Endless data attack: a malicious mirror answers the image download with a stream that never
ends (the genuine image, then filler), to fill the device's flash or keep it busy forever.

Stopped by: the signed length cap in the agent's streaming download (``download_into`` never
accepts more than the target's maker-signed length; it aborts as soon as a chunk would go past
it), so the device stops after about the signed length and reports why. With that cap switched
off (the download told the length is unbounded) the device swallows the whole stream (bounded
here at 8 MiB so the test cannot hang) and then installs: ``test_..._without_length_cap``
shows this test then fails. TUF's own fetcher caps metadata downloads the same way
(``UpdaterConfig.*_max_length``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kit.attacks import Endless, Scene, assert_refused
from otaguard.agent import slot_stream


def attack(scene: Scene) -> Endless:
    v2 = scene.release("2.0.0")
    image = scene.images[v2]
    stream = Endless(image)

    def mirror(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.startswith("/tuf/targets/"):
            return httpx.Response(200, stream=stream)
        return None

    scene.mitm.on_request = mirror
    since = len(scene.events())
    scene.deploy(v2)
    scene.dev.run_until_settled()
    assert_refused(
        scene, since=since, event="failed", reason=f"more than the signed length of {len(image)}"
    )
    return stream


def test_endless_target_stream_is_cut_at_the_signed_length(scene: Scene) -> None:
    stream = attack(scene)
    signed_length = len(scene.images[next(reversed(scene.images))])
    assert stream.sent <= signed_length + 2 * 65536  # stopped reading right after the cap


def test_attack_succeeds_without_length_cap(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    real = slot_stream.download_into

    def uncapped(*args: Any, **kwargs: Any) -> Any:
        kwargs["length"] = 1 << 40
        return real(*args, **kwargs)

    monkeypatch.setattr(slot_stream, "download_into", uncapped)
    with pytest.raises(AssertionError, match="left its image"):
        attack(scene)

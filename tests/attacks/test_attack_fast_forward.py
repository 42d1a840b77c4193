"""Fast-forward attack: a network attacker or malicious mirror (or someone holding a timestamp
key that root no longer names) serves a timestamp with a far-future version (2**31 - 1). Were
the device to trust it, every genuine timestamp after it would look like a rollback, and the
device would refuse all updates from then on.

Stopped by: the signature check of timestamp against the timestamp key(s) root names
(``verify_delegate``): the forged version is never trusted, and after the attacker leaves the
device updates normally. With the signature check switched off, the device trusts the forged
timestamp (and installs in the same run): ``test_..._without_signature_check`` shows this test
then fails.
"""

from __future__ import annotations

import httpx
import pytest
from tuf.api import _payload
from tuf.api.metadata import Metadata, MetaFile, Timestamp

from kit.attacks import Scene, assert_refused
from otaguard.crypto.keys import generate_signer
from otaguard.repo.roles import TIMESTAMP, expiry_for

FAR_FUTURE = 2**31 - 1


def attack(scene: Scene) -> None:
    v2 = scene.release("2.0.0")
    ts = scene.ctx.repo.timestamp()
    forged = Metadata(
        Timestamp(
            version=FAR_FUTURE,
            expires=expiry_for(TIMESTAMP),
            snapshot_meta=MetaFile(version=ts.signed.snapshot_meta.version),
        )
    )
    forged.sign(generate_signer())

    def serve(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/tuf/metadata/timestamp.json"):
            return httpx.Response(200, content=forged.to_bytes())
        return None

    scene.mitm.on_request = serve
    since = len(scene.events())
    scene.deploy(v2)
    scene.dev.run_until_settled()
    assert_refused(scene, since=since, reason="timestamp was signed by 0/1 keys")
    assert scene.dev.agent is not None
    scene.mitm.on_request = None  # the attacker goes away: the device was not fast-forwarded
    scene.deploy(v2)
    scene.dev.run_until_settled()
    assert (scene.dev.version, scene.dev.slot) == ("2.0.0", "b")
    assert scene.dev.agent is not None
    trusted = Metadata[Timestamp].from_file(str(scene.dev.config.tuf_dir / "timestamp.json"))
    assert trusted.signed.version == scene.ctx.repo.timestamp().signed.version < FAR_FUTURE


def test_far_future_timestamp_from_a_mirror_is_refused(scene: Scene) -> None:
    attack(scene)


def test_attack_succeeds_without_signature_check(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_payload._DelegatorMixin, "verify_delegate", lambda *_a, **_k: None)
    with pytest.raises(AssertionError, match="left its image"):
        attack(scene)
    trusted = Metadata[Timestamp].from_file(str(scene.dev.config.tuf_dir / "timestamp.json"))
    assert trusted.signed.version == FAR_FUTURE  # fast-forwarded: genuine ones now look old

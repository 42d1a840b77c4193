"""Delta installs end to end: a real server, a maker-signed repository holding the full image
and a delta target, a simulated device rebuilding the image from its active slot.

The delta is used only when its signed metadata fits the assignment and the active slot holds
its source; its bytes are checked against the signed hash before the decoder reads any; every
failure falls back to the full image once, reported; the slot is always verified against the
full image's signed hash before the switch.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import httpx
import pytest
from tuf.api.metadata import TargetFile
from typer.testing import CliRunner

import otaguard.agent.delta_steps as delta_steps
from kit.agent import write_agent_toml
from kit.attacks import MitmTransport, replace_body
from kit.delta import (
    images,
    make_patch,
    offer_delta,
    publish_delta,
    release_image,
    sign_and_publish,
    similar_payloads,
)
from otaguard.agent.journal import JournalFile
from otaguard.agent.offline import BundleTransport
from otaguard.agent.slot_stream import SlotStream
from otaguard.agent.statemachine import State
from otaguard.bundle.create import create_bundle
from otaguard.cli.main import app
from otaguard.delta import DeltaDecoder
from otaguard.delta.container import HEADER_SIZE
from otaguard.demo import Demo
from otaguard.device.image import build_image
from otaguard.errors import DeltaSourceMismatchError
from otaguard.repo.maker_deltas import add_deltas
from otaguard.sim.device import SimulatedDevice

SIZE = 300 * 1024


@dataclass
class World:
    d: Demo
    dev: SimulatedDevice
    mitm: MitmTransport
    v1: bytes
    v2: bytes
    v2_name: str
    delta_path: str
    requested: list[str]  # request paths the device sent

    def events(self) -> list[dict[str, Any]]:
        assert self.d.api is not None
        result: list[dict[str, Any]] = self.d.api.device(self.dev.config.device_id)["events"]
        return result

    def detail(self, event: str) -> list[dict[str, Any]]:
        return [e["detail"] for e in self.events() if e["event"] == event]

    def target_requests(self) -> list[str]:
        return [p for p in self.requested if p.startswith("/tuf/targets/")]


def world(
    d: Demo,
    monkeypatch: pytest.MonkeyPatch,
    *,
    active: bytes | None = None,
    patch: bytes | None = None,
) -> World:
    """v1 on the device (or ``active``), v2 released, the delta v1 -> v2 (or ``patch``, signed
    as it is) published and offered with every assignment of v2."""
    v1, v2 = images(SIZE)
    release_image(d, "1.0.0", v1)
    v2_name = release_image(d, "2.0.0", v2, security_version=1)
    delta_path = publish_delta(d, v2_name, v1, patch if patch is not None else make_patch(v1, v2))
    offer_delta(monkeypatch, v2_name, delta_path)
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    mitm = MitmTransport(d.ctx.settings.tls.ca_cert)
    requested: list[str] = []

    def record(request: httpx.Request) -> httpx.Response | None:
        requested.append(request.url.path)
        return None

    mitm.on_request = record
    d.devices = 1
    d.provision_fleet(active if active is not None else v1, http_transport=mitm)
    return World(d, d.fleet[0], mitm, v1, v2, v2_name, delta_path, requested)


def install(w: World) -> int:
    dep = w.d.deploy(w.v2_name)
    w.dev.run_until_settled()
    assert w.dev.agent is not None
    assert w.dev.agent.journal.state is State.IDLE
    return dep


def assert_installed_v2(w: World, dep: int) -> None:
    assert (w.dev.version, w.dev.slot) == ("2.0.0", "b")
    assert w.dev.slots.path("b").read_bytes() == w.v2  # the full image, byte for byte
    assert w.d.api is not None
    (target,) = w.d.api.deployment_devices(dep)
    assert (target["status"], target["last_event"]) == ("succeeded", "committed")
    assert w.dev.agent is not None
    assert not w.dev.agent.patch_path().exists()  # the patch is not kept


def test_delta_install_rebuilds_the_full_image(
    demo_world: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world(demo_world, monkeypatch)
    dep = install(w)
    assert_installed_v2(w, dep)
    (downloading,) = w.detail("downloading")
    assert downloading["delta"] == w.delta_path
    assert "delta_fallback" not in downloading
    (downloaded,) = w.detail("downloaded")
    assert downloaded["delta"] == w.delta_path
    assert downloaded["bytes"] < len(w.v2) // 4  # the patch, not the image, crossed the wire
    fetched = w.target_requests()
    assert any(p.endswith(".otadelta") for p in fetched)
    assert not any(p.endswith(".img") for p in fetched), fetched  # the full image never
    # The agent learnt the active image's hash once (it hashed slot a: provisioning did not
    # record it) and records the new slot's from its verification.
    assert w.dev.agent is not None
    assert w.dev.agent.journal.slot_images == {
        "a": hashlib.sha256(w.v1).hexdigest(),
        "b": hashlib.sha256(w.v2).hexdigest(),
    }


def decoder_spy(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record the patch bytes every ``DeltaDecoder`` the agent builds is given."""
    fed: list[bytes] = []

    class Spy(DeltaDecoder):
        def __init__(self, source: Any, patch: Any, **kwargs: Any) -> None:
            here = patch.tell()
            fed.append(patch.read())
            patch.seek(here)
            super().__init__(source, patch, **kwargs)

    monkeypatch.setattr(delta_steps, "DeltaDecoder", Spy)
    return fed


def tamper(w: World) -> bytes:
    """A mirror serving the delta with one byte changed; returns what it serves."""
    assert w.d.repo is not None
    genuine = (w.d.repo.staged_dir / w.delta_path).read_bytes()
    forged = bytearray(genuine)
    forged[HEADER_SIZE + 40] ^= 0xFF  # inside the segment table: a decoder would choke on it

    def swap(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith(".otadelta"):
            return replace_body(response, bytes(forged))
        return response

    w.mitm.on_response = swap
    return bytes(forged)


@pytest.mark.parametrize("defence", [True, False], ids=["verified", "control-unverified"])
def test_tampered_delta_is_refused_before_decoding(
    demo_world: Demo, monkeypatch: pytest.MonkeyPatch, defence: bool
) -> None:
    w = world(demo_world, monkeypatch)
    forged = tamper(w)
    fed = decoder_spy(monkeypatch)
    if not defence:  # control: without the hash check the forged bytes reach the decoder
        monkeypatch.setattr(TargetFile, "verify_length_and_hashes", lambda self, data: None)
    dep = install(w)
    assert_installed_v2(w, dep)  # either way the full image ends up installed
    (fallback,) = [d for d in w.detail("downloading") if "delta_fallback" in d]
    if defence:
        assert fed == []
        assert fallback["delta_fallback"].startswith("delta refused before decoding")
    else:
        assert fed == [forged]
        assert not fallback["delta_fallback"].startswith("delta refused before decoding")


def test_active_slot_other_than_the_source_gets_the_full_image(
    demo_world: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = build_image("1.0.0", "sim-board", payload=b"another build of 1.0.0" * 1000)
    w = world(demo_world, monkeypatch, active=other)
    fed = decoder_spy(monkeypatch)
    dep = install(w)
    assert_installed_v2(w, dep)
    (downloading,) = w.detail("downloading")
    assert downloading["delta_fallback"].startswith("delta not used: the active slot")
    assert "delta" not in downloading
    assert fed == []
    assert not any(p.endswith(".otadelta") for p in w.target_requests())  # never fetched
    assert w.dev.agent is not None
    assert "a" not in w.dev.agent.journal.slot_images  # a hash that is not the source: unsaved


def corrupt_codec(patch: bytes) -> bytes:
    """The first stream's codec byte set to an unknown codec: a decode error."""
    bad = bytearray(patch)
    bad[HEADER_SIZE + 24] = 7
    return bytes(bad)


@pytest.mark.parametrize("kind", ["undecodable", "rebuilds-another-image"])
def test_corrupt_but_signed_delta_falls_back_once(
    demo_world: Demo, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    v1, v2 = images(SIZE)
    if kind == "undecodable":
        patch = corrupt_codec(make_patch(v1, v2))
        want = "delta does not apply"
    else:  # a patch to another image, signed as if it rebuilt v2
        patch = make_patch(v1, v2[:-1000] + bytes(1000))
        want = "the image rebuilt from the delta failed verification"
    w = world(demo_world, monkeypatch, patch=patch)
    dep = install(w)
    assert_installed_v2(w, dep)
    fallbacks = [d for d in w.detail("downloading") if "delta_fallback" in d]
    assert len(fallbacks) == 1, fallbacks  # once, reported
    assert fallbacks[0]["delta_fallback"].startswith(want), fallbacks
    fetched = w.target_requests()
    assert sum(p.endswith(".otadelta") for p in fetched) == 1
    assert sum(p.endswith(".img") for p in fetched) == 1  # the full image, once


def test_a_rebuilt_slot_that_fails_verification_falls_back_once(
    demo_world: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decoder's hash matched but the slot read back differs (the flash got it wrong):
    the full image instead; if that also fails, the update fails (no second fallback)."""
    w = world(demo_world, monkeypatch)
    reads = {"n": 0}

    def flaky_read_back(stream: Any, slot: str, length: int) -> str | None:
        reads["n"] += 1
        return "0" * 64

    monkeypatch.setattr(SlotStream, "read_back", flaky_read_back)
    dep = w.d.deploy(w.v2_name)
    w.dev.run_until_settled()
    assert reads["n"] == 2  # the rebuilt slot, then the full image: no third attempt
    fallbacks = [d for d in w.detail("downloading") if "delta_fallback" in d]
    assert len(fallbacks) == 1
    assert fallbacks[0]["delta_fallback"].startswith("the image rebuilt from the delta failed")
    (failed,) = w.detail("failed")
    assert failed["reason"].startswith("verification failed")
    assert (w.dev.version, w.dev.slot) == ("1.0.0", "a")
    assert w.d.api is not None
    (target,) = w.d.api.deployment_devices(dep)
    assert target["status"] == "failed"


def test_delta_end_to_end_offered_by_the_server_on_the_reported_image(demo_world: Demo) -> None:
    """No test seam: the maker builds the delta 2.0.0 -> 3.0.0 (``add_deltas``), the device that
    installed 2.0.0 reports that image's hash in its signed manifest, the server's director
    offers the delta, the agent rebuilds 3.0.0 from it."""
    d = demo_world
    v1 = build_image("1.0.0", "sim-board", payload=b"factory" * 5000)
    p2, p3 = similar_payloads(SIZE, seed=3)
    v2 = build_image("2.0.0", "sim-board", payload=p2)
    v3 = build_image("3.0.0", "sim-board", payload=p3)
    release_image(d, "1.0.0", v1)
    v2_name = release_image(d, "2.0.0", v2)
    v3_name = release_image(d, "3.0.0", v3)
    assert d.repo is not None
    (outcome,) = add_deltas(d.repo, v3_name, ["2.0.0"])
    assert outcome.target is not None, outcome.message
    sign_and_publish(d)
    d.devices = 1
    d.provision_fleet(v1)
    (dev,) = d.fleet
    assert d.api is not None
    d.api.create_deployment("to-2", v2_name, {"all": True})
    dev.run_until_settled()
    assert (dev.version, dev.slot) == ("2.0.0", "b")
    dep = int(d.api.create_deployment("to-3", v3_name, {"all": True})["id"])
    dev.run_until_settled()
    assert (dev.version, dev.slot) == ("3.0.0", "a")
    assert dev.slots.path("a").read_bytes() == v3
    events = d.api.device(dev.config.device_id)["events"]
    downloaded = [e["detail"] for e in events if e["event"] == "downloaded"]
    assert "delta" not in downloaded[0]  # 1.0.0 -> 2.0.0: no delta made, the full image
    assert downloaded[-1]["delta"] == outcome.target.path  # 2.0.0 -> 3.0.0: the delta
    assert downloaded[-1]["bytes"] == outcome.target.length
    (target,) = d.api.deployment_devices(dep)
    assert (target["status"], target["last_event"]) == ("succeeded", "committed")


def test_offline_bundle_carrying_a_delta_installs_from_it(demo_world: Demo, tmp_path: Path) -> None:
    """``bundle create --delta-from`` puts the signed delta next to the image; ``agent
    install`` rebuilds the image from it (the image member stays unread)."""
    d = demo_world
    v1, v2 = images(SIZE)
    release_image(d, "1.0.0", v1)
    v2_name = release_image(d, "2.0.0", v2, security_version=1)
    assert d.repo is not None
    (outcome,) = add_deltas(d.repo, v2_name, ["1.0.0"])
    assert outcome.target is not None, outcome.message
    sign_and_publish(d)
    d.devices = 1
    d.provision_fleet(v1)
    (dev,) = d.fleet
    dev.close()
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    bundle = tmp_path / "v2.bundle"
    create_bundle(
        d.url,
        v2_name,
        bundle,
        trusted_root=d.repo.root_history()[0].read_bytes(),
        ca_file=d.ctx.settings.tls.ca_cert,
        delta_from=(hashlib.sha256(v1).hexdigest(),),
    )
    toml = write_agent_toml(dev)
    served: list[str] = []
    real = BundleTransport.handle_request

    def spy(self: BundleTransport, request: httpx.Request) -> httpx.Response:
        served.append(request.url.path)
        return real(self, request)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(BundleTransport, "handle_request", spy)
        result = CliRunner().invoke(
            app, ["agent", "install", str(bundle), "--config", str(toml), "--no-reboot"]
        )
    assert result.exit_code == 0, result.output
    assert dev.slots.path("b").read_bytes() == v2
    targets = [p for p in served if "/tuf/targets/" in p]
    assert targets
    assert all(p.endswith(".otadelta") for p in targets), targets
    outbox = JournalFile(dev.config.journal_path).load().outbox
    (downloaded,) = [r["detail"] for r in outbox if r["event"] == "downloaded"]
    assert downloaded["delta"] == outcome.target.path


def test_a_slot_larger_than_its_image_is_read_as_the_image() -> None:
    """A block-device slot is larger than the image in it: the decoder sees only the first
    ``source_length`` bytes (``SlotPrefix``); given the whole device it refuses the source."""
    v1, v2 = images(64 * 1024)
    patch = io.BytesIO(make_patch(v1, v2))
    device = io.BytesIO(v1 + b"\xff" * 300_000)  # the rest of the partition
    with pytest.raises(DeltaSourceMismatchError):
        DeltaDecoder(device, patch)
    out = io.BytesIO()
    prefix = delta_steps.SlotPrefix(device, len(v1))
    DeltaDecoder(cast(BinaryIO, prefix), patch).apply(out.write)
    assert out.getvalue() == v2
    assert (prefix.seek(0, 2), prefix.read(10)) == (len(v1), b"")

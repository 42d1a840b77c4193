"""Tools to attack a simulated device over the real server: a man-in-the-middle / malicious
mirror transport, a compromised server writing forged metadata with its online keys, and the
assertions every attack test makes (refused, still running its image, reason reported)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, TargetFile, Targets

from otaguard.demo import HARDWARE, Demo
from otaguard.device.image import build_image
from otaguard.net.tls import tls_context
from otaguard.repo.images import ReleaseInfo, sha256_of
from otaguard.sim.device import SimulatedDevice

RequestHook = Callable[[httpx.Request], httpx.Response | None]
ResponseHook = Callable[[httpx.Request, httpx.Response], httpx.Response]


class MitmTransport(httpx.BaseTransport):
    """The device's HTTPS transport with an attacker in the path: ``on_request`` may answer
    instead of the server, ``on_response`` may rewrite what the server answered."""

    def __init__(self, ca_file: Path) -> None:
        self.inner = httpx.HTTPTransport(verify=tls_context(ca_file))
        self.on_request: RequestHook | None = None
        self.on_response: ResponseHook | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.on_request is not None:
            forged = self.on_request(request)
            if forged is not None:
                return forged
        response = self.inner.handle_request(request)
        if self.on_response is not None:
            response = self.on_response(request, response)
        return response

    def close(self) -> None:
        self.inner.close()


def replace_body(response: httpx.Response, body: bytes) -> httpx.Response:
    response.read()
    response.close()
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return httpx.Response(response.status_code, headers=headers, content=body)


class Endless(httpx.SyncByteStream):
    """``prefix`` then filler without end (bounded by ``budget`` so a broken defence cannot
    hang the test suite; far more than any signed length here)."""

    def __init__(self, prefix: bytes, budget: int = 8 << 20) -> None:
        self.prefix = prefix
        self.budget = budget
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        yield self.prefix
        self.sent = len(self.prefix)
        chunk = b"\xaa" * 65536
        while self.sent < self.budget:
            yield chunk
            self.sent += len(chunk)


@dataclass
class Scene:
    """A server with release 1.0.0 published and two devices running it from slot a."""

    d: Demo
    mitm: MitmTransport
    v1_name: str
    v1: bytes
    images: dict[str, bytes] = field(default_factory=dict)

    @property
    def dev(self) -> SimulatedDevice:
        return self.d.fleet[0]

    @property
    def other(self) -> SimulatedDevice:
        return self.d.fleet[1]

    @property
    def ctx(self) -> Any:
        assert self.d.ctx is not None
        return self.d.ctx

    @property
    def api(self) -> Any:
        assert self.d.api is not None
        return self.d.api

    def release(self, version: str, security_version: int = 0) -> str:
        name, image = self.d.release(version, security_version=security_version)
        self.images[name] = image
        return name

    def deploy(self, target_name: str, device: SimulatedDevice | None = None) -> int:
        dev = device or self.dev
        dep = self.api.create_deployment(
            f"deploy-{len(self.events(dev))}-{target_name.rsplit('/', 1)[-1]}",
            target_name,
            {"devices": [dev.config.device_id]},
        )
        return int(dep["id"])

    def events(self, device: SimulatedDevice | None = None) -> list[dict[str, Any]]:
        dev = device or self.dev
        result: list[dict[str, Any]] = self.api.device(dev.config.device_id)["events"]
        return result

    # -- a compromised server: forged metadata signed with whatever keys the attacker has ------
    def forge_release(
        self,
        version: str,
        signers: list[Signer],
        *,
        hardware: str = HARDWARE,
        security_version: int = 0,
    ) -> str:
        """Targets naming an image the maker never signed, signed by ``signers``, stored on the
        server, re-snapshotted with the server's online keys, with its artifact uploaded and a
        release row so the director can deploy it."""
        image = build_image(version, hardware, security_version=security_version, payload_size=4096)
        name = f"{hardware}/firmware-{version}.img"
        current = self.ctx.repo.targets()
        md = Metadata[Targets].from_bytes(current.to_bytes())
        target = TargetFile.from_data(name, image, ["sha256"])
        info = ReleaseInfo(version, (hardware,), security_version)
        target.unrecognized_fields["custom"] = info.to_custom()
        md.signed.targets[name] = target
        md.signed.version += 1
        md.signatures.clear()
        for s in signers:
            md.sign(s, append=True)
        self.install_targets(md.to_bytes())
        self.ctx.blobs.put_bytes(image, sha256_of(target))
        self.ctx.store.upsert_release(
            name,
            version=version,
            hardware=[hardware],
            security_version=security_version,
            sha256=sha256_of(target),
            length=target.length,
            custom=dict(target.custom),
        )
        self.images[name] = image
        return name

    def install_targets(self, data: bytes) -> None:
        """Write targets bytes into the server's store (no checks) and sign a snapshot and
        timestamp for them with the server's online keys."""
        version = Metadata.from_bytes(data).signed.version
        self.ctx.repo.store.put(f"{version}.targets.json", data, replace=True)
        self.ctx.repo._resnapshot({"targets": version})

    def withdraw(self, name: str) -> None:
        """The maker removes a release from targets (new version, both targets keys)."""
        repo = self.d.repo
        assert repo is not None
        md = repo.targets()
        del md.signed.targets[name]
        repo.save_new_version("targets", md)
        for s in self.d.maker_signers["targets"]:
            repo.sign("targets", s)
        self.api.publish(repo)

    def assignment_reply(self, assignment: bytes, deployment_id: int = 1) -> RequestHook:
        """A check-in answer carrying ``assignment`` (a compromised server or MITM)."""

        def hook(request: httpx.Request) -> httpx.Response | None:
            if request.url.path != "/device/v1/checkin":
                return None
            body = {
                "action": "update",
                "assignment": assignment.decode(),
                "deployment_id": deployment_id,
                "poll_interval": 5,
            }
            return httpx.Response(200, json=body)

        return hook


def assert_refused(
    scene: Scene,
    *,
    since: int,
    reason: str,
    event: str = "refused",
    version: str = "1.0.0",
    slot: str = "a",
    device: SimulatedDevice | None = None,
) -> None:
    """The device did not install: it still runs ``version`` from ``slot`` (agent view, boot
    environment and what the bootloader boots), and the server stored ``event`` with
    ``reason`` among the events reported since index ``since``."""
    dev = device or scene.dev
    assert (dev.version, dev.slot) == (version, slot), "device left its image"
    env = dev.env.read()
    assert (env["boot_slot"], env["upgrade_available"]) == (slot, "0"), "device left its image"
    assert dev.bootloader.boot().slot == slot, "device left its image"
    new = scene.events(dev)[since:]
    kinds = [e["event"] for e in new]
    assert "installed" not in kinds, f"device installed: {kinds}"
    assert event in kinds, f"device did not refuse: {kinds}"
    detail = json.dumps(next(e for e in new if e["event"] == event)["detail"])
    assert reason in detail, f"reported reason {detail} lacks {reason!r}"

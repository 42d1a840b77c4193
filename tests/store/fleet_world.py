"""Real ``otaguard server`` processes, a maker repository, and simulated devices whose every
status report is recorded on the wire: the pieces of the crash and scale-out tests."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from otaguard.agent.statemachine import State
from otaguard.api_client import ManagementClient
from otaguard.crypto.keys import key_from_dict, public_key_json
from otaguard.demo import HARDWARE, Demo
from otaguard.net.tls import tls_context
from otaguard.sim.device import Provisioning, SimulatedDevice

OTAGUARD = str(Path(sys.executable).with_name("otaguard"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """``otaguard server`` in a subprocess on a fixed port."""

    data_dir: Path
    port: int
    database: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    def start(self, timeout: float = 30.0) -> None:
        args = [OTAGUARD, "server", "--data-dir", str(self.data_dir), "--port", str(self.port)]
        if self.database:
            args += ["--database", self.database]
        args += self.extra_args
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.data_dir / f"server-{self.port}-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            if self.ca.exists():
                try:
                    r = httpx.get(f"{self.url}/healthz", verify=tls_context(self.ca), timeout=2)
                    if r.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not come up")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def admin(self) -> ManagementClient:
        token = (self.data_dir / "admin-token").read_text().strip()
        return ManagementClient(self.url, token, self.ca)


class WireLog(httpx.BaseTransport):
    """The device's HTTP transport, recording every status report it sends and its answer."""

    def __init__(self, ca: Path) -> None:
        self.inner = httpx.HTTPTransport(verify=tls_context(ca))
        self.lock = threading.Lock()
        self.sent: list[dict[str, Any]] = []  # every attempt, in order
        self.acked: set[str] = set()  # report ids answered 201
        self.failed_attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        is_report = request.method == "POST" and request.url.path == "/device/v1/events"
        body = json.loads(request.content) if is_report else None
        if body is not None:
            with self.lock:
                self.sent.append(body)
        try:
            response = self.inner.handle_request(request)
        except httpx.HTTPError:
            if body is not None:
                with self.lock:
                    self.failed_attempts += 1
            raise
        if body is not None and response.status_code == 201:
            with self.lock:
                self.acked.add(body["report_id"])
        return response

    def close(self) -> None:
        self.inner.close()


@dataclass
class World:
    """A maker repository published to a server, and a provisioned fleet."""

    demo: Demo
    v2_name: str
    devices: list[SimulatedDevice] = field(default_factory=list)
    wires: dict[str, WireLog] = field(default_factory=dict)

    def close(self) -> None:
        for dev in self.devices:
            dev.close()
        for wire in self.wires.values():
            wire.close()
        if self.demo.api is not None:
            self.demo.api.close()


def build_world(
    work: Path, admin: ManagementClient, urls: Sequence[str], ca: Path, devices: int
) -> World:
    """Sign v1 and v2, publish, register ``devices`` devices running v1, spread over ``urls``."""
    d = Demo(work / "maker", devices=devices, payload_size=64 * 1024)
    d.run_dir.mkdir(parents=True, exist_ok=True)
    d.api = admin
    d.setup_repository()
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    assert d.repo is not None
    director = work / "director.pub.json"
    director.write_text(public_key_json(key_from_dict(admin.online_keys()["director"])))
    world = World(d, v2_name)
    for i in range(devices):
        device_id = f"crash-{i:03d}"
        url = urls[i % len(urls)]
        key = SimulatedDevice.generate_manifest_key(work / "fleet" / device_id)
        credential = admin.register_device(device_id, HARDWARE, ["fleet"], manifest_key=key)
        wire = WireLog(ca)
        dev = SimulatedDevice.provision(
            work / "fleet" / device_id,
            device_id=device_id,
            hardware=HARDWARE,
            credential=credential,
            image=v1,
            provisioning=Provisioning(url, ca, director, d.repo.root_history()[0].read_bytes()),
            http_transport=wire,
            sleep=lambda s: time.sleep(min(s, 0.05)),
        )
        cfg = dev.config
        cfg.backoff_base, cfg.backoff_max = 0.05, 0.2
        cfg.max_download_attempts, cfg.max_download_requests = 1000, 5000
        cfg.request_timeout = 10.0
        dev.power_on()
        world.devices.append(dev)
        world.wires[device_id] = wire
    return world


def settle(dev: SimulatedDevice, want: str, deadline: float, pause: Callable[[], None]) -> None:
    """Drive one device until it runs ``want``, is idle and has delivered every report."""
    while time.monotonic() < deadline:
        out = dev.run_once()
        while out.reboot:
            out = dev.reboot()
        agent = dev.agent
        assert agent is not None
        if dev.version == want and agent.journal.state is State.IDLE and agent.flush_reports():
            return
        if out.action in ("failed", "refused"):
            raise AssertionError(f"{dev.config.device_id}: {out}")
        pause()
    raise AssertionError(f"{dev.config.device_id} did not settle")


def assert_reports_stored_exactly(world: World, admin: ManagementClient) -> int:
    """Every report a device sent is stored once, as sent; returns how many there were."""
    total = 0
    for dev in world.devices:
        device_id = dev.config.device_id
        wire = world.wires[device_id]
        agent = dev.agent
        assert agent is not None
        assert agent.journal.outbox == []
        sent: dict[str, dict[str, Any]] = {}
        for body in wire.sent:
            assert sent.setdefault(body["report_id"], body) == body  # retries resend as-is
        stored = admin.device(device_id)["events"]
        ids = [e["report_id"] for e in stored]
        assert len(ids) == len(set(ids)), f"{device_id}: a report was stored twice"
        assert set(ids) == set(sent), f"{device_id}: stored {ids}, sent {list(sent)}"
        assert wire.acked <= set(ids)
        for e in stored:
            body = sent[e["report_id"]]
            got = {k: e[k] for k in ("event", "deployment_id", "version", "slot", "detail")}
            want = {k: body[k] for k in ("event", "deployment_id", "version", "slot", "detail")}
            assert got == want, device_id
        # In the order the device sent them (first attempts).
        assert ids == list(sent), device_id
        total += len(ids)
    return total


def assert_deployment_consistent(
    admin: ManagementClient, dep_id: int, devices: int
) -> dict[str, Any]:
    dep = admin.deployment(dep_id)
    targets = admin.deployment_devices(dep_id)
    counts: dict[str, int] = {}
    for t in targets:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    assert dep["counts"] == counts
    assert dep["total"] == len(targets) == devices
    assert counts == {"succeeded": devices}
    assert dep["state"] == "completed"
    for t in targets:
        detail = admin.device(t["device_id"])
        assert (detail["current_version"], detail["update_state"]) == ("2.0.0", "committed")
        assert detail["events"][-1]["event"] == "committed"
    return dep

"""The lightweight fleet simulator: many devices in one process, no slots, no images.

Each device is a device key, a credential and a version; it talks to a real server over its
HTTP API exactly as an agent's protocol does (signed version manifests at check-in, status
reports, health reports) but "installs" by reporting, so hundreds or thousands of devices fit
in one process. A scenario (``sim/scenarios.py``) makes a seeded share of them misbehave; the
run drives a phased deployment round by round (every device checks in once per round, then
the rollout is evaluated) and returns what the rollout did and which alerts fired.

What it does not simulate: downloads (no artifact bytes move), power loss mid-write, boot
loaders. ``sim/device.py`` is the full agent on emulated slots for that.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from securesystemslib.signer import CryptoSigner

from otaguard.crypto.device_key import public_key_dict
from otaguard.director.manifest import VersionManifest, sign_manifest
from otaguard.errors import OTAGuardError
from otaguard.sim.scenarios import Fault, Scenario

SLOW_ROUNDS = 3


class SimulationError(OTAGuardError):
    code = "simulation"


@dataclass
class LightDevice:
    id: str
    hardware: str
    credential: str
    signer: CryptoSigner
    version: str
    security_version: int = 0
    fault: Fault | None = None
    stage: int = 0  # 0 idle, >0 rounds spent on the current update
    checked_in: bool = False
    gone: bool = False  # silent: stopped talking
    sequence: int = 0  # the last manifest sequence number signed (as the agent keeps it)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}", "X-OTAGuard-Device": self.id}


@dataclass(frozen=True)
class RunResult:
    deployment_id: int
    rounds: int
    state: str
    outcome: str | None
    rollout: dict[str, Any]
    alerts: list[dict[str, Any]]
    decisions: list[str]

    def summary(self) -> str:
        lines = [
            f"deployment {self.deployment_id}: {self.state}"
            + (f" ({self.outcome})" if self.outcome else "")
            + f" after {self.rounds} rounds; rollout {self.rollout['status']} in phase "
            f"{self.rollout['phases'][self.rollout['phase']]['name']!r}",
        ]
        for p in self.rollout["phases"]:
            counts = ", ".join(f"{k} {v}" for k, v in p["counts"].items() if v)
            lines.append(f"  phase {p['name']}: {counts or 'no devices'}")
        lines += [f"  decision: {d}" for d in self.decisions]
        lines.append(f"alerts: {len(self.alerts)}")
        lines += [f"  [{a['severity']}] {a['kind']}: {a['message']}" for a in self.alerts]
        return "\n".join(lines)


class LightFleet:
    """Devices of one scenario on the server ``api`` (an ``httpx.Client`` with the server's
    base URL and an operator's bearer token)."""

    def __init__(self, api: httpx.Client, scenario: Scenario, *, hardware: str) -> None:
        self.api = api
        self.scenario = scenario
        self.hardware = hardware
        self.devices: list[LightDevice] = []
        self.rng = random.Random(scenario.seed)

    def call(self, method: str, url: str, **kw: Any) -> Any:
        r = self.api.request(method, url, **kw)
        if r.status_code >= 400:
            raise SimulationError(f"{method} {url}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def enroll(self, version: str, prefix: str = "light") -> None:
        """Register the scenario's devices (each with its own manifest key), assign faults,
        and check each in once on ``version``."""
        n = self.scenario.devices
        faults: list[Fault | None] = [None] * n
        order = list(range(n))
        self.rng.shuffle(order)
        taken = 0
        for fault, share in self.scenario.faults.items():
            count = round(share * n)
            for i in order[taken : taken + count]:
                faults[i] = fault
            taken += count
        for i in range(n):
            signer = CryptoSigner.generate_ed25519()
            device_id = f"{prefix}-{i:05d}"
            body = {
                "id": device_id,
                "hardware": self.hardware,
                "tags": ["sim"],
                "manifest_key": public_key_dict(signer),
            }
            credential = self.call("POST", "/api/v1/devices", json=body)["credential"]
            floor = 1 if faults[i] is Fault.DOWNGRADE else 0
            self.devices.append(
                LightDevice(device_id, self.hardware, credential, signer, version, floor, faults[i])
            )
        for device in self.devices:
            self.check_in(device)

    def check_in(self, device: LightDevice) -> dict[str, Any]:
        security = device.security_version
        version = device.version
        if device.fault is Fault.DOWNGRADE and device.checked_in:
            security = 0  # below the floor of 1 it enrolled with
        device.checked_in = True
        device.sequence += 1
        if device.fault is Fault.ROGUE_FIRMWARE:
            version = "99.0.0-unpublished"
        manifest = VersionManifest.create(
            device_id=device.id,
            hardware=device.hardware,
            version=version,
            slot="a",
            security_version=security,
            agent_version="light-sim",
            sequence=device.sequence,
        )
        body = {"manifest": sign_manifest(manifest, device.signer)}
        reply: dict[str, Any] = self.call(
            "POST", "/device/v1/checkin", json=body, headers=device.headers
        )
        return reply

    def report(self, device: LightDevice, event: str, deployment: int, **detail: Any) -> None:
        body = {
            "event": event,
            "deployment_id": deployment,
            "version": device.version,
            "report_id": secrets.token_hex(8),
            "detail": detail,
        }
        self.call("POST", "/device/v1/events", json=body, headers=device.headers)

    def health(self, device: LightDevice, worse: bool) -> None:
        boot = self.rng.gauss(35.0 if worse else 20.0, 1.0)
        body = {
            "version": device.version,
            "boot_seconds": round(boot, 3),
            "restarts": 2 if worse else 0,
            "check_passed": not worse,
        }
        self.call("POST", "/device/v1/health", json=body, headers=device.headers)

    def step(self, device: LightDevice, new_version: str, deployment: int) -> None:
        """One round of one device: check in, and act on an offer as its fault says."""
        if device.gone:
            return
        reply = self.check_in(device)
        if reply.get("action") != "update" or reply.get("deployment_id") != deployment:
            return
        device.stage += 1
        fault = device.fault
        if fault is Fault.SLOW and device.stage < SLOW_ROUNDS:
            if device.stage == 1:
                self.report(device, "downloading", deployment)
            return
        if fault is Fault.BAD_SIGNATURE:
            self.report(
                device,
                "refused",
                deployment,
                code="verification",
                error="targets metadata signature did not verify",
            )
            return
        self.report(device, "downloading", deployment)
        if fault is Fault.INSTALL_FAILURE:
            self.report(device, "failed", deployment, code="install", error="write failed")
            return
        self.report(device, "installed", deployment)
        if fault is Fault.SILENT:
            device.gone = True
            return
        device.version = new_version
        self.report(device, "committed", deployment)
        self.health(device, worse=fault is Fault.HEALTH_FAILURE)


def run_rollout(
    fleet: LightFleet,
    *,
    target_name: str,
    new_version: str,
    max_rounds: int = 12,
    before_evaluate: Callable[[], None] = lambda: None,
) -> RunResult:
    """Deploy ``target_name`` with the scenario's plan and run rounds until the rollout ends,
    pauses, or stops moving (held at a gate) for three rounds."""
    api = fleet.call
    for device in fleet.devices:  # the control cohort's health, on the old version
        fleet.health(device, worse=False)
    body = {
        "name": f"sim-{fleet.scenario.name}",
        "target_name": target_name,
        "selector": {"tag": "sim"},
        "plan": fleet.scenario.plan(),
    }
    dep = int(api("POST", "/api/v1/deployments", json=body)["id"])
    decisions: list[str] = []
    still, last, rounds = 0, None, 0
    for rounds in range(1, max_rounds + 1):  # noqa: B007 (reported after the loop)
        evaluation = api("POST", f"/api/v1/deployments/{dep}/evaluate")
        _note(decisions, evaluation)
        for device in fleet.devices:
            fleet.step(device, new_version, dep)
        before_evaluate()
        evaluation = api("POST", f"/api/v1/deployments/{dep}/evaluate")
        _note(decisions, evaluation)
        view = api("GET", f"/api/v1/deployments/{dep}/rollout")
        if view["state"] != "active" or view["status"] != "running":
            break
        position = (view["phase"], [p["counts"] for p in view["phases"]])
        still = still + 1 if position == last else 0
        last = position
        if still >= 3:
            break
    view = api("GET", f"/api/v1/deployments/{dep}/rollout")
    alerts = api("GET", "/api/v1/alerts", params={"limit": 1000})["items"]
    return RunResult(dep, rounds, view["state"], view["outcome"], view, alerts, decisions)


def _note(decisions: list[str], evaluation: dict[str, Any]) -> None:
    if evaluation["action"] not in ("wait", "none"):
        decisions.append(
            f"{evaluation['action']} ({evaluation['reason']}): {evaluation['message']}"
        )

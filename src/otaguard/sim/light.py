"""The lightweight fleet simulator: many devices in one process, no slots, no images.

Each device is a device key, a credential and a version; it talks to a real server over its
HTTP API exactly as an agent's protocol does (signed version manifests at check-in, status
reports, health reports) but "installs" by reporting, so hundreds or thousands of devices fit
in one process. A scenario (``sim/scenarios.py``) makes a seeded share of them misbehave; the
run drives a phased deployment round by round (every device checks in once per round, then
the rollout is evaluated) and returns what the rollout did and which alerts fired.

Devices download the file their signed assignment names from ``/tuf/targets`` (with Range
when resuming after a power loss), so the server's per-device download accounting sees real
traffic. What it does not simulate: verifying the download, writing slots, boot loaders.
``sim/device.py`` is the full agent on emulated slots for that.
"""

from __future__ import annotations

import json
import math
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
#: a looping device downloads its update this many times, or 4 MiB worth, whichever is more
LOOP_DOWNLOADS = 10
LOOP_BYTES = 4 << 20
#: wrong credentials a guessing client tries (once, from the fleet's address)
GUESSES = 30


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
    kept: dict[str, Any] | None = None  # replay: its first signed manifest, sent again
    lost_power: bool = False  # power loss: already lost it once, mid-download
    resume_at: int = 0  # power loss: bytes kept from before the loss (0: restart)
    guessed: bool = False  # credential guessing: done

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
        if device.fault is Fault.REPLAY and device.kept is None:
            device.kept = body
        reply: dict[str, Any] = self.call(
            "POST", "/device/v1/checkin", json=body, headers=device.headers
        )
        return reply

    def misbehave(self, device: LightDevice) -> None:
        """Before a round's check-in: a replayed old manifest, or (once) a burst of wrong
        credentials claiming the device's id. The server refuses both (checked by the
        tests: a refusal here that turned into a success would be a bug)."""
        if device.fault is Fault.REPLAY and device.kept is not None:
            self._refused(device.headers, device.kept)
        if device.fault is Fault.CREDENTIAL_GUESSING and not device.guessed:
            device.guessed = True
            for _ in range(GUESSES):
                headers = {**device.headers, "Authorization": f"Bearer {secrets.token_hex(16)}"}
                manifest = VersionManifest.create(
                    device_id=device.id,
                    hardware=device.hardware,
                    version=device.version,
                    slot="a",
                    security_version=device.security_version,
                    agent_version="light-sim",
                )
                self._refused(headers, {"manifest": sign_manifest(manifest, device.signer)})

    def _refused(self, headers: dict[str, str], body: dict[str, Any]) -> None:
        r = self.api.post("/device/v1/checkin", json=body, headers=headers)
        if r.status_code not in (401, 429):
            raise SimulationError(f"a bad check-in was answered {r.status_code}: {r.text[:200]}")

    def fetch(self, device: LightDevice, assignment: str) -> bool:
        """Download the assigned file as the device's fault says; False when the device lost
        power before it had all of it (it resumes, or restarts, next round)."""
        url, length = assigned_file(assignment)
        if device.fault is Fault.POWER_LOSS and not device.lost_power:
            device.lost_power = True
            half = max(1, length // 2)
            self._get(device, url, 0, half - 1)
            device.resume_at = half if self.rng.random() < 0.5 else 0
            return False
        times = 1
        if device.fault is Fault.DOWNLOAD_LOOP:
            times = max(LOOP_DOWNLOADS, math.ceil(LOOP_BYTES / max(1, length)))
        for _ in range(times):
            self._get(device, url, device.resume_at)
            device.resume_at = 0
        return True

    def _get(self, device: LightDevice, url: str, first: int = 0, last: int | None = None) -> None:
        """Bytes ``first`` to ``last`` (inclusive; None: to the end) of ``url``."""
        headers = dict(device.headers)
        if first > 0 or last is not None:
            headers["Range"] = f"bytes={first}-{'' if last is None else last}"
        r = self.api.get(url, headers=headers)
        if r.status_code not in (200, 206):
            raise SimulationError(f"GET {url}: {r.status_code} {r.text[:200]}")

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
        self.misbehave(device)
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
        if not self.fetch(device, str(reply["assignment"])):
            return  # lost power: the next round's check-in finds the same offer
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


def assigned_file(assignment: str) -> tuple[str, int]:
    """The ``/tuf/targets`` URL (consistent snapshot: ``dir/<sha256>.<name>``) and length of
    the one file a director assignment names (read, not verified: the simulator is not
    the agent)."""
    targets = json.loads(assignment)["signed"]["targets"]
    ((path, info),) = targets.items()
    directory, _, name = path.rpartition("/")
    prefixed = f"{info['hashes']['sha256']}.{name}"
    return f"/tuf/targets/{directory + '/' if directory else ''}{prefixed}", int(info["length"])


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

"""A simulated device: file-backed A/B slots, a redundant U-Boot environment, OTP fuses, the
simulated bootloader, and the real agent running against the real server."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from otaguard.agent.agent import HealthCheck, Outcome, UpdateAgent
from otaguard.agent.config import AgentConfig
from otaguard.agent.health_reports import HealthProbe
from otaguard.crypto.device_key import load_or_create_device_key, public_key_dict
from otaguard.crypto.keys import write_private
from otaguard.device.bootenv import BootEnv, UBootEnv
from otaguard.device.bootloader import Bootloader, BootResult, default_env
from otaguard.device.grubenv import GrubEnv
from otaguard.device.otp import OtpCounter
from otaguard.device.slots import FileSlots
from otaguard.device.storage import Storage
from otaguard.errors import BootError


@dataclass(frozen=True)
class Provisioning:
    """What the factory puts on a device besides its image."""

    server_url: str
    ca_file: Path
    director_key_file: Path
    trusted_root: bytes


class SimulatedDevice:
    def __init__(
        self,
        directory: Path,
        config: AgentConfig,
        *,
        health_check: HealthCheck | None = None,
        http_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        storage: Storage | None = None,
        env_backend: str = "uboot",
        wall_clock: Callable[[], dt.datetime] | None = None,
        health_probe: HealthProbe | None = None,
    ) -> None:
        self.directory = directory
        self.config = config
        self.storage = storage or Storage()  # all durable device writes (power-cut tests)
        self.slots = FileSlots(directory / "slots", self.storage)
        self.env: BootEnv
        if env_backend == "grub":
            self.env = GrubEnv(directory / "grubenv", self.storage)
        elif env_backend == "uboot":
            self.env = UBootEnv(
                [directory / "uboot.env", directory / "uboot-redund.env"], storage=self.storage
            )
        else:
            raise BootError(f"unknown boot environment backend {env_backend!r}")
        self.otp = OtpCounter(directory / "otp.fuses", self.storage)
        self.bootloader = Bootloader(self.env, self.slots, self.otp, config.hardware)
        self._health = health_check
        self._transport = http_transport
        self._sleep = sleep
        self._wall_clock = wall_clock  # the time of day (maintenance windows, health reports)
        self.health_probe = health_probe  # the health signals it reports (tests worsen them)
        self.agent: UpdateAgent | None = None
        self.boot: BootResult | None = None
        self.boots = 0

    @staticmethod
    def generate_manifest_key(directory: Path) -> dict[str, Any]:
        """Step one of provisioning: the device makes its own key (it signs the version
        manifests it reports); return the public key to register with the server."""
        signer = load_or_create_device_key(directory / "state" / "manifest.key")
        return public_key_dict(signer)

    @classmethod
    def provision(
        cls,
        directory: Path,
        *,
        device_id: str,
        hardware: str,
        credential: str,
        image: bytes,
        provisioning: Provisioning,
        **kwargs: object,
    ) -> SimulatedDevice:
        """Factory-fresh device: ``image`` in slot a (committed), credentials and trust anchors
        (and its manifest key, if ``generate_manifest_key`` did not make it already)."""
        directory.mkdir(parents=True, exist_ok=True)
        state = directory / "state"
        state.mkdir(exist_ok=True)
        load_or_create_device_key(state / "manifest.key")
        write_private(state / "credential", credential.encode())
        shutil.copyfile(provisioning.director_key_file, state / "director.pub.json")
        (state / "root.json").write_bytes(provisioning.trusted_root)
        shutil.copyfile(provisioning.ca_file, state / "ca.pem")
        config = AgentConfig(
            device_id=device_id,
            hardware=hardware,
            server_url=provisioning.server_url,
            state_dir=state,
            credential_file=state / "credential",
            director_key_file=state / "director.pub.json",
            trusted_root_file=state / "root.json",
            ca_file=state / "ca.pem",
        )
        dev = cls(directory, config, **kwargs)  # type: ignore[arg-type]
        dev.slots.path("a").write_bytes(image)
        dev.env.write(default_env("a"))
        return dev

    def power_on(self) -> Outcome:
        """Boot (the bootloader picks and checks a slot), then start the agent."""
        self.boots += 1
        self.boot = self.bootloader.boot()
        if self.agent is not None:
            self.agent.close()
        kwargs: dict[str, object] = {}
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        self.agent = UpdateAgent(
            self.config,
            slots=self.slots,
            env=self.env,
            otp=self.otp,
            health_check=self._health or (lambda _b: (True, "simulated health check passed")),
            http_transport=self._transport,
            storage=self.storage,
            wall_clock=self._wall_clock,
            health_probe=self.health_probe,
            **kwargs,  # type: ignore[arg-type]
        )
        return self.agent.after_boot(self.boot)

    def reboot(self) -> Outcome:
        return self.power_on()

    def run_once(self) -> Outcome:
        if self.agent is None:
            raise BootError("device is not powered on")
        return self.agent.run_once()

    def run_until_settled(self, max_cycles: int = 10) -> list[Outcome]:
        """Poll, rebooting whenever the agent asks, until no update is under way."""
        from otaguard.agent.statemachine import State

        outcomes: list[Outcome] = []
        for _ in range(max_cycles):
            out = self.run_once()
            outcomes.append(out)
            while out.reboot:
                out = self.reboot()
                outcomes.append(out)
            assert self.agent is not None
            if out.action != "retry" and self.agent.journal.state is State.IDLE:
                break
        return outcomes

    @property
    def version(self) -> str | None:
        return self.boot.version if self.boot else None

    @property
    def slot(self) -> str | None:
        return self.boot.slot if self.boot else None

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()

"""The agent as a long-running service (``otaguard agent run``) and the one-shot offline install.

``AgentService`` opens the device described by the config (slots, boot environment, OTP
counter), learns what the bootloader booted (``layout.boot_info``), lets the agent reconcile its
journal with that boot, then polls: ``run_once``, wait the poll interval with jitter, again (or
less: a verified push wake-up, ``agent/push.py``, ends the wait early, rate-limited). When
the agent asks for a reboot the configured ``reboot_command`` runs (``systemctl reboot`` on a
real board) and the loop ends. ``stop()`` (SIGTERM) ends the wait at once; during a cycle it
raises ``AgentStopped`` in the main thread, which is safe because every step is journaled
before it starts and redone after a restart (the same property that survives a power cut).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from otaguard.agent.agent import UpdateAgent, describe
from otaguard.agent.config import AgentConfig
from otaguard.agent.journal import JournalFile
from otaguard.agent.layout import DeviceLayout, boot_info
from otaguard.agent.offline import BundleTransport
from otaguard.agent.outcome import Action, Outcome
from otaguard.agent.push import PushWakeups
from otaguard.agent.statemachine import State
from otaguard.bundle.format import BundleReader
from otaguard.errors import ConfigError

log = logging.getLogger(__name__)

METADATA_INTEGRITY_LIMIT = 1 << 22  # bundle members up to 4 MiB are checked against the manifest


class AgentStopped(BaseException):
    """SIGTERM arrived during a cycle (a ``BaseException``: no ``except Exception`` keeps
    the agent going after it)."""


def load_config(path: Path) -> tuple[AgentConfig, DeviceLayout]:
    """The agent's config and device layout, checked whole: every value, and every file it
    names (all missing ones listed in one ``ConfigError``)."""
    config, layout = AgentConfig.from_toml(path), DeviceLayout.from_toml(path)
    missing = config.missing_files() + layout.missing_files()
    if missing:
        raise ConfigError(f"{path}: missing files: {'; '.join(missing)}")
    return config, layout


class AgentService:
    def __init__(
        self,
        config: AgentConfig,
        layout: DeviceLayout,
        *,
        http_transport: httpx.BaseTransport | None = None,
        run_command: Callable[[list[str]], int] | None = None,
    ) -> None:
        self.config = config
        self.layout = layout
        self.slots = layout.open_slots()
        self.env = layout.open_env()
        self.otp = layout.open_otp()
        self.agent = UpdateAgent(
            config, slots=self.slots, env=self.env, otp=self.otp, http_transport=http_transport
        )
        self._run_command = run_command or _run
        self._stop = threading.Event()
        self._wakeup = threading.Event()  # set by stop() and by a scheduled push wake-up
        self._busy = False
        self.cycles = 0  # poll cycles run (for the operator's logs and the tests)
        self.push: PushWakeups | None = None
        if config.mqtt is not None:
            self.push = PushWakeups(
                config.mqtt,
                device_id=config.device_id,
                director_key=self.agent.director_key,
                on_due=self._wakeup.set,
            )

    def close(self) -> None:
        if self.push is not None:
            self.push.close()
        self.agent.close()

    # -- signals ----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self._wakeup.set()

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal received, stopping", extra={"signal": signum})
        self.stop()
        if self._busy:
            raise AgentStopped(f"signal {signum}")

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # -- work -------------------------------------------------------------------------------
    def _cycle(self, step: Callable[[], Outcome]) -> Outcome:
        self._busy = True
        try:
            if self._stop.is_set():
                raise AgentStopped("stop requested")
            out = step()
        finally:
            self._busy = False
        log.info(
            "cycle done",
            extra={"action": out.action, "detail": out.detail, "state": self.state()},
        )
        return out

    def boot(self) -> Outcome:
        boot = boot_info(self.env, self.layout.cmdline_file, self.agent.journal.slot_versions)
        log.info("booted", extra={"slot": boot.slot, "version": boot.version, "trial": boot.trial})
        return self._cycle(lambda: self.agent.after_boot(boot))

    def confirm(self) -> Outcome:
        """Reconcile with this boot and finish a trial (health check, commit or roll back)
        without contacting the server: the final report waits in the journal's outbox."""
        boot = boot_info(self.env, self.layout.cmdline_file, self.agent.journal.slot_versions)
        self.agent.offline = True
        return self._cycle(lambda: self.agent.after_boot(boot))

    def state(self) -> str:
        return self.agent.journal.state.value

    def reboot(self, why: str) -> bool:
        """Run the configured reboot command; ``False`` if none is configured."""
        command = self.layout.reboot_command
        if not command:
            log.warning("reboot required, no reboot_command configured", extra={"reason": why})
            return False
        log.info("rebooting", extra={"reason": why, "command": command})
        code = self._run_command(command)
        if code != 0:
            raise ConfigError(f"reboot command {command} exited with {code}")
        return True

    def run(self, *, once: bool = False) -> Outcome:
        """Boot reconciliation, then poll until stopped (or one cycle with ``once``)."""
        try:
            out = self.boot()
            if out.reboot:
                self.reboot(out.detail)
                return out
            if self.push is not None and not once:
                self.push.start()
            while True:
                out = self._cycle(self._check_in)
                if out.reboot:
                    self.reboot(out.detail)
                    return out
                if once:
                    return out
                self.wait(self.agent.poll_delay())
        except AgentStopped:
            log.info("stopped", extra={"state": self.state()})
            return Outcome(Action.IDLE, "stopped")

    def _check_in(self) -> Outcome:
        if self.push is not None:
            self.push.checkin_started()  # serves the wake-ups received so far
        self.cycles += 1
        return self.agent.run_once()

    def wait(self, delay: float) -> None:
        """Until the next poll (``delay`` seconds) or, sooner, until a pending push wake-up is
        due (its rate limit allows it); ``AgentStopped`` when stopped meanwhile."""
        log.debug("waiting", extra={"seconds": round(delay, 1)})
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            due = self.push.due_at() if self.push is not None else None
            until = deadline if due is None else min(deadline, due)
            left = until - time.monotonic()
            if left <= 0:
                if due is not None and due <= deadline:
                    log.info("checking in early: push wake-up")
                return
            self._wakeup.wait(left)
            self._wakeup.clear()
        raise AgentStopped("stop requested")

    def install_bundle(self, bundle: BundleReader) -> Outcome:
        """Install from an offline bundle: after-boot reconciliation, then the target."""
        out = self.boot()
        if out.reboot or self.agent.journal.state is not State.IDLE:
            return Outcome(Action.REFUSED, f"finish the update under way first ({out.detail})")
        log.info(
            "installing from bundle", extra={"bundle": str(bundle.path), "target": bundle.target}
        )
        deltas = bundle.manifest.deltas
        return self._cycle(lambda: self.agent.install_target(bundle.target, deltas))


def open_for_bundle(
    config: AgentConfig, layout: DeviceLayout, path: Path, **kwargs: Any
) -> tuple[AgentService, BundleReader]:
    bundle = BundleReader(path)
    try:
        bundle.check_integrity(max_size=METADATA_INTEGRITY_LIMIT)
        service = AgentService(
            config, layout, http_transport=BundleTransport(bundle, config.server_url), **kwargs
        )
    except BaseException:
        bundle.close()
        raise
    return service, bundle


def status(config: AgentConfig, layout: DeviceLayout) -> dict[str, Any]:
    """The journal's state plus what the device runs (no network, nothing written)."""
    journal = JournalFile(config.journal_path).load()
    info: dict[str, Any] = describe(journal)
    info["reason"] = journal.reason or None
    env = layout.open_env()
    try:
        values = env.read()
        info["boot_env"] = {
            k: values.get(k) for k in ("boot_slot", "upgrade_available", "bootcount", "bootlimit")
        }
        boot = boot_info(env, layout.cmdline_file, journal.slot_versions)
        info["running"] = {"slot": boot.slot, "version": boot.version}
    except Exception as exc:  # status must print what it can
        info["error"] = str(exc)
    info["security_version"] = layout.open_otp().value()
    info["device_id"] = config.device_id
    return info


def _run(command: list[str]) -> int:
    return subprocess.run(command, check=False, timeout=120).returncode

"""The device agent: check in, verify, stream into the inactive slot, switch, trial, commit.

Every step is journaled before it takes effect (see ``statemachine.py`` for the states), so the
agent can be killed or lose power anywhere and, after the next boot, ``after_boot`` and
``run_once`` pick up where it stopped. Nothing is installed that did not pass, in this order:
the director assignment (signature, device, expiry, counter), the TUF refresh of the maker's
repository, the match between the two, the hardware and anti-rollback checks, and the length and
hash check of the bytes written to the slot (read back from the slot, not from memory).
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater

from otaguard import __version__
from otaguard.agent.config import AgentConfig
from otaguard.agent.journal import Journal, JournalFile
from otaguard.agent.statemachine import Event, State, is_active, next_state
from otaguard.agent.transport import (
    DeviceCredentials,
    HttpxFetcher,
    download_into,
    hash_prefix,
    make_client,
)
from otaguard.crypto.keys import load_public_key
from otaguard.device.bootenv import UBootEnv
from otaguard.device.bootloader import BootResult
from otaguard.device.otp import OtpCounter
from otaguard.device.slots import Slots, other_slot
from otaguard.director.assignment import matches_repository, verify_assignment
from otaguard.errors import (
    AssignmentError,
    CompatibilityError,
    DownloadError,
    OTAGuardError,
    VerificationError,
)
from otaguard.fleet.status import UpdateEvent
from otaguard.repo.images import ReleaseInfo

log = logging.getLogger("otaguard.agent")

HealthCheck = Callable[[BootResult], tuple[bool, str]]


@dataclass(frozen=True)
class Outcome:
    """What one ``run_once`` did; ``reboot`` asks the caller to reboot the device."""

    action: str  # "idle" | "reboot" | "failed" | "refused" | "retry"
    detail: str = ""

    @property
    def reboot(self) -> bool:
        return self.action == "reboot"


def command_health_check(command: list[str], timeout: float) -> HealthCheck:
    def check(_boot: BootResult) -> tuple[bool, str]:
        if not command:
            return True, "no health command configured"
        try:
            proc = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"health command failed to run: {exc}"
        out = (proc.stdout + proc.stderr).decode(errors="replace")[-2000:]
        return proc.returncode == 0, f"exit {proc.returncode}: {out}"

    return check


class UpdateAgent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        slots: Slots,
        env: UBootEnv,
        otp: OtpCounter,
        health_check: HealthCheck | None = None,
        http_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.slots = slots
        self.env = env
        self.otp = otp
        self.health_check = health_check or command_health_check(
            config.health_command, config.health_timeout
        )
        self.journal_file = JournalFile(config.journal_path)
        self.journal = self.journal_file.load()
        self.boot: BootResult | None = None
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.director_key = load_public_key(config.director_key_file)
        self.client = make_client(
            config.server_url,
            config.ca_file,
            DeviceCredentials(config.device_id, config.credential()),
            timeout=config.request_timeout,
            transport=http_transport,
        )

    def close(self) -> None:
        self.client.close()

    # -- journal and reports ----------------------------------------------------------------
    def _to(self, event: Event, **changes: Any) -> None:
        j = self.journal
        j.state = next_state(j.state, event)
        for k, v in changes.items():
            setattr(j, k, v)
        self.journal_file.save(j)

    def _report(self, event: UpdateEvent, **detail: Any) -> None:
        """Queue a report durably, then try to send everything queued."""
        j = self.journal
        boot = self.boot
        j.outbox.append(
            {
                "event": event.value,
                "deployment_id": j.deployment_id,
                "version": boot.header.version if boot else None,
                "slot": boot.slot if boot else None,
                "detail": {k: v for k, v in detail.items() if v is not None},
            }
        )
        self.journal_file.save(j)
        self.flush_reports()

    def flush_reports(self) -> bool:
        """Send queued reports in order; keep the rest if the server is unreachable."""
        sent = 0
        for item in self.journal.outbox:
            try:
                r = self.client.post("/device/v1/events", json=item)
            except httpx.HTTPError as exc:
                log.warning("report not delivered yet: %s", exc)
                break
            if r.status_code >= 500:
                break
            if r.status_code >= 400:
                log.error("server rejected report %s: %s", item["event"], r.text[:200])
            sent += 1
        if sent:
            del self.journal.outbox[:sent]
            self.journal_file.save(self.journal)
        return not self.journal.outbox

    # -- boot -------------------------------------------------------------------------------
    def after_boot(self, boot: BootResult) -> Outcome:
        """Reconcile the journal with what the bootloader actually booted."""
        self.boot = boot
        j = self.journal
        if j.state is State.VERIFYING and boot.slot == j.target_slot:
            # Power was cut after the boot env switched but before the journal said so.
            self._to(Event.VERIFIED)
        if j.state is State.REBOOT_PENDING:
            if boot.slot == j.target_slot and not boot.fell_back:
                self._to(Event.BOOTED_NEW)
                self._report(UpdateEvent.BOOTED)
            else:
                return self._rolled_back(boot.reason or "bootloader booted the previous slot")
        if j.state is State.TRIAL:
            return self._trial(boot)
        if j.state in (State.COMMITTED, State.ROLLED_BACK, State.FAILED):
            self._finish()
        self.flush_reports()
        return Outcome("idle")

    def _trial(self, boot: BootResult) -> Outcome:
        j = self.journal
        if boot.slot != j.target_slot:
            return self._rolled_back(boot.reason or "trial slot is no longer booted")
        if not boot.trial:
            # The boot env was already committed before a power cut: finish the commit.
            return self._commit()
        healthy, why = self.health_check(boot)
        if healthy:
            return self._commit()
        prev = j.previous_slot or other_slot(boot.slot)
        self.env.update(boot_slot=prev, upgrade_available="0", bootcount="0")
        self._to(Event.UNHEALTHY, reason=f"health check failed: {why}")
        return Outcome("reboot", "health check failed; rolling back")

    def _commit(self) -> Outcome:
        j = self.journal
        self.env.update(upgrade_available="0", bootcount="0")
        self.otp.raise_to(j.security_version)  # only after the new slot is committed
        self._to(Event.HEALTHY)
        self._report(UpdateEvent.COMMITTED, security_version=self.otp.value())
        self._finish()
        return Outcome("idle", "committed")

    def _rolled_back(self, reason: str) -> Outcome:
        j = self.journal
        if j.state is not State.ROLLED_BACK:
            self._to(Event.BOOTED_OLD, reason=reason)
        self._finish()
        return Outcome("idle", f"rolled back: {reason}")

    def _finish(self) -> None:
        j = self.journal
        event = {
            State.COMMITTED: None,
            State.ROLLED_BACK: UpdateEvent.ROLLED_BACK,
            State.FAILED: UpdateEvent.FAILED,
        }[j.state]
        if event is not None:
            self._report(event, reason=j.reason or None)
        self._to(
            Event.REPORTED,
            target=None,
            target_slot=None,
            bytes_written=0,
            reason="",
        )

    # -- the update loop --------------------------------------------------------------------
    def current_version(self) -> str | None:
        return self.boot.header.version if self.boot else None

    def check_in(self) -> dict[str, Any]:
        boot = self.boot
        body = {
            "hardware": self.config.hardware,
            "version": boot.header.version if boot else None,
            "slot": boot.slot if boot else None,
            "security_version": self.otp.value(),
            "agent_version": __version__,
        }
        try:
            r = self.client.post("/device/v1/checkin", json=body)
        except httpx.HTTPError as exc:
            raise DownloadError(f"check-in failed: {exc}") from exc
        if r.status_code != 200:
            raise DownloadError(
                f"check-in refused: HTTP {r.status_code} {r.text[:200]}",
                permanent=400 <= r.status_code < 500,
            )
        data: dict[str, Any] = r.json()
        return data

    def run_once(self) -> Outcome:
        """One polling cycle: resume an unfinished update, or check in and maybe start one."""
        if self.boot is None:
            raise OTAGuardError("after_boot must run before run_once")
        self.flush_reports()
        try:
            if self.journal.state in (State.DOWNLOADING, State.VERIFYING):
                return self._continue()
            if is_active(self.journal.state):
                return Outcome("idle", f"waiting in {self.journal.state.value}")
            reply = self.check_in()
        except DownloadError as exc:
            return Outcome("retry", str(exc))
        if reply.get("action") != "update" or not reply.get("assignment"):
            return Outcome("idle")
        return self._start(str(reply["assignment"]).encode(), reply.get("deployment_id"))

    def _refuse(self, deployment_id: int | None, exc: OTAGuardError) -> Outcome:
        self.journal.deployment_id = deployment_id
        log.warning("refused update: %s", exc)
        self._report(UpdateEvent.REFUSED, error=str(exc), code=exc.code)
        self.journal.deployment_id = None
        self.journal_file.save(self.journal)
        return Outcome("refused", str(exc))

    def trusted_target(self, path: str) -> TargetFile:
        """Refresh the maker's TUF repository and return the signed description of ``path``."""
        cfg = self.config
        cfg.tuf_dir.mkdir(parents=True, exist_ok=True)
        cached_root = cfg.tuf_dir / "root.json"
        bootstrap = None if cached_root.exists() else cfg.trusted_root_file.read_bytes()
        base = cfg.server_url.rstrip("/")
        updater = Updater(
            metadata_dir=str(cfg.tuf_dir),
            metadata_base_url=f"{base}/tuf/metadata/",
            target_base_url=f"{base}/tuf/targets/",
            target_dir=str(cfg.state_dir / "targets"),
            fetcher=HttpxFetcher(self.client),
            bootstrap=bootstrap,
        )
        try:
            updater.refresh()
            info = updater.get_targetinfo(path)
        except tuf_exc.DownloadError as exc:
            raise DownloadError(f"repository metadata unavailable: {exc}") from exc
        except (tuf_exc.RepositoryError, ValueError) as exc:
            raise VerificationError(f"repository metadata rejected: {exc}") from exc
        if info is None:
            raise VerificationError(f"target {path} is not in the maker-signed repository")
        return info

    def _start(self, assignment_bytes: bytes, deployment_id: Any) -> Outcome:
        dep_id = int(deployment_id) if isinstance(deployment_id, int) else None
        boot = self.boot
        assert boot is not None
        try:
            assignment = verify_assignment(
                assignment_bytes,
                self.director_key,
                device_id=self.config.device_id,
                min_counter=self.journal.last_counter + 1,
            )
            dep_id = assignment.deployment_id
            target = self.trusted_target(assignment.target.path)
            matches_repository(assignment, target)
            info = ReleaseInfo.of_target(target)
            if self.config.hardware not in info.hardware:
                raise CompatibilityError(
                    f"release is for {', '.join(info.hardware)}, not {self.config.hardware}"
                )
            if info.security_version < self.otp.value():
                raise CompatibilityError(
                    f"release security version {info.security_version} is below this device's "
                    f"anti-rollback counter {self.otp.value()}"
                )
        except DownloadError as exc:
            return Outcome("retry", str(exc))
        except (AssignmentError, VerificationError, CompatibilityError) as exc:
            return self._refuse(dep_id, exc)
        self.journal.last_counter = assignment.counter
        self._to(
            Event.ACCEPT,
            deployment_id=dep_id,
            target={"path": target.path, **target.to_dict()},
            target_slot=other_slot(boot.slot),
            previous_slot=boot.slot,
            previous_version=boot.header.version,
            new_version=info.version,
            security_version=info.security_version,
            bytes_written=0,
            reason="",
        )
        self._report(UpdateEvent.DOWNLOADING, target=target.path, to_version=info.version)
        return self._continue()

    def _target(self) -> TargetFile:
        raw = dict(self.journal.target or {})
        path = raw.pop("path")
        return TargetFile.from_dict(raw, path)

    def _continue(self) -> Outcome:
        if self.journal.state is State.DOWNLOADING:
            outcome = self._download()
            if outcome is not None:
                return outcome
        return self._verify_and_switch()

    def _download(self) -> Outcome | None:
        j = self.journal
        target = self._target()
        slot = j.target_slot
        assert slot is not None
        prefixed = target.get_prefixed_paths()[0]
        url = f"/tuf/targets/{prefixed}"
        attempts = 0
        while True:
            offset = min(j.bytes_written, target.length)
            try:
                with self.slots.open_write(slot, offset) as fh:
                    since_checkpoint = 0

                    def write(chunk: bytes) -> None:
                        nonlocal since_checkpoint
                        fh.write(chunk)
                        since_checkpoint += len(chunk)

                    def progress(total: int) -> None:
                        nonlocal since_checkpoint
                        if since_checkpoint >= self.config.checkpoint_bytes:
                            fh.flush()
                            os.fsync(fh.fileno())
                            j.bytes_written = total
                            self.journal_file.save(j)
                            since_checkpoint = 0

                    try:
                        result = download_into(
                            self.client,
                            url,
                            length=target.length,
                            offset=offset,
                            write=write,
                            on_progress=progress,
                        )
                    finally:
                        fh.flush()
                        os.fsync(fh.fileno())
                        j.bytes_written = min(fh.tell(), target.length)
                        self.journal_file.save(j)
                if offset + result.written >= target.length:
                    self._to(Event.DOWNLOADED, bytes_written=target.length)
                    self._report(UpdateEvent.DOWNLOADED, bytes=target.length)
                    return None
                raise DownloadError("connection closed before the whole target arrived")
            except DownloadError as exc:
                attempts += 1
                if exc.permanent or attempts >= self.config.max_download_attempts:
                    self._to(Event.ERROR, reason=f"download failed: {exc}")
                    self._finish()
                    return Outcome("failed", str(exc))
                self.sleep(self._backoff(attempts))

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        cap = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))
        return self.rng.uniform(0, cap)

    def _verify_and_switch(self) -> Outcome:
        j = self.journal
        target = self._target()
        slot = j.target_slot
        assert slot is not None
        try:
            self.slots.truncate(slot, target.length)
            with self.slots.open_read(slot) as fh:
                h = hash_prefix(fh.read, target.length)
            if h.hexdigest() != target.hashes.get("sha256"):
                raise VerificationError(
                    "slot content does not match the maker-signed sha256 "
                    f"(got {h.hexdigest()[:16]}..., want {target.hashes.get('sha256', '')[:16]}...)"
                )
        except VerificationError as exc:
            self._to(Event.ERROR, reason=f"verification failed: {exc}")
            self._finish()
            return Outcome("failed", str(exc))
        self._report(UpdateEvent.VERIFIED)
        # Boot env first, journal second: after_boot understands a cut between the two.
        self.env.update(boot_slot=slot, upgrade_available="1", bootcount="0")
        self._to(Event.VERIFIED)
        self._report(UpdateEvent.INSTALLED, slot_written=slot)
        self._report(UpdateEvent.REBOOTING)
        return Outcome("reboot", f"installed {j.new_version} into slot {slot}")

    def poll_delay(self) -> float:
        base = self.config.poll_interval
        return base * (1 + self.rng.uniform(-self.config.poll_jitter, self.config.poll_jitter))


def describe(journal: Journal) -> dict[str, Any]:
    return {
        "state": journal.state.value,
        "deployment_id": journal.deployment_id,
        "target": (journal.target or {}).get("path"),
        "bytes_written": journal.bytes_written,
        "pending_reports": len(journal.outbox),
    }

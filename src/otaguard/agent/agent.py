"""The device agent: check in, verify, stream into the inactive slot, switch, trial, commit.

Every state is journaled before its work starts, and every state's work is idempotent (see
``statemachine.py`` for the states and for ``boot_event``, the pure decision of what a boot
means for the journaled state), so the agent can be killed or lose power anywhere and, after the
next boot, ``after_boot`` and ``run_once`` redo the journaled state's work. Nothing is installed that did not pass, in this order:
the director assignment (signature, device, expiry, counter), the TUF refresh of the maker's
repository, the match between the two, the hardware and anti-rollback checks, and the length and
hash check of the bytes written to the slot (read back from the slot, not from memory).
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
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
from otaguard.agent.readback import SlotReadBack
from otaguard.agent.renewal import CertificateRenewal
from otaguard.agent.statemachine import (
    FINAL,
    VOLATILE,
    BootFacts,
    Event,
    State,
    boot_event,
    next_state,
)
from otaguard.crypto.keys import load_public_key
from otaguard.device.bootenv import BootEnv
from otaguard.device.bootloader import BootResult
from otaguard.device.otp import OtpCounter
from otaguard.device.slots import Slots, other_slot
from otaguard.device.storage import Storage
from otaguard.director.assignment import matches_repository, verify_assignment
from otaguard.errors import (
    AssignmentError,
    CompatibilityError,
    DownloadError,
    OTAGuardError,
    RepositoryError,
    VerificationError,
)
from otaguard.fleet.status import UpdateEvent
from otaguard.net.client import DeviceCredentials, make_client
from otaguard.net.download import WRITE_CHUNK, DownloadCancelled, download_into, hash_prefix
from otaguard.net.fetcher import HttpxFetcher
from otaguard.repo.images import ReleaseInfo

log = logging.getLogger("otaguard.agent")

HealthCheck = Callable[[BootResult], tuple[bool, str]]

ATTEMPT_VAR = "ota_attempt"  # boot env variable tagging the switch made by one update attempt


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
        env: BootEnv,
        otp: OtpCounter,
        health_check: HealthCheck | None = None,
        http_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        storage: Storage | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.slots = slots
        self.env = env
        self.otp = otp
        self.health_check = health_check or command_health_check(
            config.health_command, config.health_timeout
        )
        self.journal_file = JournalFile(config.journal_path, storage)
        self.journal = self.journal_file.load()
        self.boot: BootResult | None = None
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self.director_key = load_public_key(config.director_key_file)
        # Before the TLS identity is loaded: finishes a renewal a power cut interrupted.
        self.renewal = CertificateRenewal(config, storage, clock=clock)
        self._http_transport = http_transport
        self.client = self._device_client()
        self.repo_client = (
            make_client(
                config.repository_url,
                config.ca_file,
                None,
                timeout=config.request_timeout,
                transport=http_transport,
            )
            if config.repository_url
            else self.client
        )
        self._last_cancel_check = float("-inf")
        self._stream_state: tuple[str | None, int, Any] = (None, 0, None)
        # The slot being read back alongside the download: (slot, attempt, reader).
        self._readback: tuple[str, str, SlotReadBack] | None = None

    def _device_client(self) -> httpx.Client:
        config = self.config
        return make_client(
            config.server_url,
            config.ca_file,
            DeviceCredentials(config.device_id, config.credential()),
            timeout=config.request_timeout,
            transport=self._http_transport,
            client_cert=config.client_cert,
        )

    def renew_certificate(self) -> bool:
        """Renew the client certificate when it is due (agent/renewal.py), then reconnect so
        the next request presents the new one. A failure keeps the old one (retried later)."""
        if not self.renewal.maybe_renew(self.client):
            return False
        old, self.client = self.client, self._device_client()
        if self.repo_client is old:
            self.repo_client = self.client
        old.close()
        return True

    def close(self) -> None:
        self._drop_readback()
        self.client.close()
        if self.repo_client is not self.client:
            self.repo_client.close()

    # -- journal and reports ----------------------------------------------------------------
    def _to(
        self,
        event: Event,
        *,
        reports: tuple[tuple[UpdateEvent, dict[str, Any]], ...] = (),
        report_deployment: int | None = None,
        **changes: Any,
    ) -> None:
        """Take a transition: new state, changes and queued reports saved in one atomic journal
        write (unless the new state is volatile and nothing durable changed), then try to send
        the reports."""
        j = self.journal
        before = j.state
        j.state = next_state(before, event)
        for k, v in changes.items():
            setattr(j, k, v)
        for kind, detail in reports:
            j.outbox.append(self._report_item(kind, detail, report_deployment))
        if changes or reports or (before not in VOLATILE and j.state not in VOLATILE):
            self.journal_file.save(j)
        log.info(
            "transition",
            extra={"event": event.value, "from": before.value, "to": j.state.value},
        )
        if reports:
            self.flush_reports()

    def _report_item(
        self, event: UpdateEvent, detail: dict[str, Any], deployment_id: int | None = None
    ) -> dict[str, Any]:
        boot = self.boot
        return {
            "report_id": secrets.token_hex(16),  # the server stores a retried report once
            "event": event.value,
            "deployment_id": deployment_id
            if deployment_id is not None
            else self.journal.deployment_id,
            "version": boot.header.version if boot else None,
            "slot": boot.slot if boot else None,
            "detail": {k: v for k, v in detail.items() if v is not None},
        }

    def _report(self, event: UpdateEvent, **detail: Any) -> None:
        """Queue a progress report durably (no state change), then try to send everything."""
        self.journal.outbox.append(self._report_item(event, detail))
        self.journal_file.save(self.journal)
        self.flush_reports()

    def flush_reports(self) -> bool:
        """Send queued reports in order; keep the rest if the server is unreachable.

        Delivery is at least once and in order: a power cut between a send and the journal save
        that drops it from the outbox sends it again, followed by everything after it.
        """
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
    def _facts(self, boot: BootResult) -> BootFacts:
        j = self.journal
        env = self.env.read()
        return BootFacts(
            on_target=boot.slot == j.target_slot,
            trial=boot.trial,
            fell_back=boot.fell_back,
            switch_done=bool(j.attempt) and env.get(ATTEMPT_VAR) == j.attempt,
            env_on_target=env.get("boot_slot") == j.target_slot
            and env.get("upgrade_available") == "1",
        )

    def after_boot(self, boot: BootResult) -> Outcome:
        """Reconcile the journal with what the bootloader actually booted, then go on with the
        journaled state's work (everything but downloading, which ``run_once`` resumes)."""
        self.boot = boot
        j = self.journal
        if j.state is State.CHECKING:  # never journaled; defensive
            j.state = State.IDLE
        while j.state not in (State.IDLE, *FINAL):
            event = boot_event(j.state, self._facts(boot))
            if event is None:
                break
            self._on_boot_event(event, boot)
        if j.state is State.DOWNLOADING:
            self.flush_reports()
            return Outcome("idle", "download resumes on the next poll")
        outcome = self._advance()
        self.flush_reports()
        return outcome

    def _on_boot_event(self, event: Event, boot: BootResult) -> None:
        j = self.journal
        if event is Event.BOOTED_NEW:
            self._to(event, reports=((UpdateEvent.BOOTED, {}),))
        elif event is Event.INSTALLED:
            self._to(event, reports=self._installed_reports())
        elif event is Event.BOOTED_OLD:
            reason = (
                j.reason
                or boot.reason
                or (
                    f"the bootloader went back to slot {boot.slot}: the trial of slot "
                    f"{j.target_slot} was not confirmed within bootlimit boots"
                )
            )
            self._to(event, reason=reason)
        elif event is Event.ERROR:
            if j.state is State.ROLLING_BACK:
                reason = f"rollback impossible, the previous slot does not boot: {boot.reason}"
            else:
                reason = f"the device now runs slot {boot.slot}, the update's target; abandoned"
            self._to(event, reason=reason)
        else:  # pragma: no cover - boot_event returns only the events above
            self._to(event)

    def _installed_reports(self) -> tuple[tuple[UpdateEvent, dict[str, Any]], ...]:
        return (
            (UpdateEvent.INSTALLED, {"slot_written": self.journal.target_slot}),
            (UpdateEvent.REBOOTING, {}),
        )

    def _advance(self) -> Outcome:
        """Do the work of the journaled state, state after state, until the update waits for
        a reboot or is over. Every step is idempotent: after a power cut it is simply redone."""
        j = self.journal
        outcome = Outcome("idle")
        while True:
            state = j.state
            if state is State.IDLE:
                return outcome
            if state is State.DOWNLOADING:
                self._download()
            elif state is State.VERIFYING:
                self._verify()
            elif state is State.INSTALLING:
                self._install()
            elif state is State.REBOOT_PENDING:
                return Outcome("reboot", f"installed {j.new_version} into slot {j.target_slot}")
            elif state is State.TRIAL:
                self._to(Event.CHECK_HEALTH)
            elif state is State.HEALTH_CHECK:
                self._check_health()
            elif state is State.COMMITTING:
                self._commit()
            elif state is State.ROLLING_BACK:
                prev = j.previous_slot or other_slot(j.target_slot or "a")
                self.env.update(boot_slot=prev, upgrade_available="0", bootcount="0")
                return Outcome("reboot", f"rolling back to slot {prev}: {j.reason}")
            else:
                outcome = self._finish()

    def _check_health(self) -> None:
        boot = self.boot
        assert boot is not None
        try:
            healthy, why = self.health_check(boot)
        except Exception as exc:  # a broken health check is an unhealthy image
            healthy, why = False, f"health check raised {type(exc).__name__}: {exc}"
        if healthy:
            self._to(Event.HEALTHY)
        else:
            self._to(Event.UNHEALTHY, reason=f"health check failed: {why}")

    def _commit(self) -> None:
        j = self.journal
        env = self.env.read()
        if env.get("upgrade_available") != "0" or env.get("bootcount") != "0":
            self.env.update(upgrade_available="0", bootcount="0")
        self.otp.raise_to(j.security_version)  # only once the new slot is committed
        self._to(Event.COMMIT_DONE)

    def _finish(self) -> Outcome:
        """Queue the final report with the transition back to idle (one journal write)."""
        j = self.journal
        state, reason = j.state, j.reason
        report: tuple[UpdateEvent, dict[str, Any]]
        if state is State.COMMITTED:
            report = (UpdateEvent.COMMITTED, {"security_version": self.otp.value()})
            outcome = Outcome("idle", "committed")
        elif state is State.ROLLED_BACK:
            report = (UpdateEvent.ROLLED_BACK, {"reason": reason or None})
            outcome = Outcome("idle", f"rolled back: {reason}")
        else:
            report = (UpdateEvent.FAILED, {"reason": reason or None})
            outcome = Outcome("failed", reason)
        self._to(
            Event.REPORTED,
            reports=(report,),
            target=None,
            target_slot=None,
            bytes_written=0,
            attempt="",
            reason="",
        )
        return outcome

    # -- the update loop --------------------------------------------------------------------
    def current_version(self) -> str | None:
        return self.boot.header.version if self.boot else None

    def check_in(self) -> dict[str, Any]:
        """Send a version manifest signed with the device key (DSSE); return the reply."""
        from otaguard.agent.manifest_key import manifest_signer
        from otaguard.director.manifest import VersionManifest, sign_manifest

        boot = self.boot
        manifest = VersionManifest.create(
            device_id=self.config.device_id,
            hardware=self.config.hardware,
            version=boot.header.version if boot else None,
            slot=boot.slot if boot else None,
            security_version=self.otp.value(),
            agent_version=__version__,
        )
        try:
            body = {"manifest": sign_manifest(manifest, manifest_signer(self.config))}
        except OTAGuardError as exc:
            raise DownloadError(f"cannot sign the version manifest: {exc}", permanent=True) from exc
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
        """One polling cycle: go on with an unfinished update, or check in and maybe start one."""
        if self.boot is None:
            raise OTAGuardError("after_boot must run before run_once")
        self.renew_certificate()
        delivered = self.flush_reports()
        if self.journal.state is not State.IDLE:
            return self._advance()
        if not delivered:
            # The server has not heard how the last update ended; checking in now could get
            # the same deployment offered again (and reinstalled). Report first.
            return Outcome("retry", "reports not yet delivered; not checking in")
        self._to(Event.CHECK)
        try:
            reply = self.check_in()
        except DownloadError as exc:
            self._to(Event.ERROR)
            return Outcome("retry", str(exc))
        if reply.get("action") != "update" or not reply.get("assignment"):
            self._to(Event.NOTHING)
            return Outcome("idle")
        return self._start(str(reply["assignment"]).encode(), reply.get("deployment_id"))

    def _refuse(self, deployment_id: int | None, exc: OTAGuardError) -> Outcome:
        log.warning("refused update: %s", exc)
        self._to(
            Event.REFUSE,
            reports=((UpdateEvent.REFUSED, {"error": str(exc), "code": exc.code}),),
            report_deployment=deployment_id,
        )
        return Outcome("refused", str(exc))

    def _updater(self) -> Updater:
        cfg = self.config
        cfg.tuf_dir.mkdir(parents=True, exist_ok=True)
        base = (cfg.repository_url or cfg.server_url).rstrip("/")

        def make(bootstrap: bytes | None) -> Updater:
            return Updater(
                metadata_dir=str(cfg.tuf_dir),
                metadata_base_url=f"{base}/tuf/metadata/",
                target_base_url=f"{base}/tuf/targets/",
                target_dir=str(cfg.state_dir / "targets"),
                fetcher=HttpxFetcher(self.repo_client),
                bootstrap=bootstrap,
            )

        factory_root = cfg.trusted_root_file.read_bytes()
        if not (cfg.tuf_dir / "root.json").exists():
            return make(factory_root)
        try:
            return make(None)
        except (tuf_exc.RepositoryError, ValueError, OSError) as exc:
            # A damaged cache: start again from the factory root, which walks the signed
            # root rotations forward again (no trust is lost, only the cache).
            log.warning("cached TUF root unusable (%s); starting from the factory root", exc)
            return make(factory_root)

    def trusted_target(self, path: str) -> TargetFile:
        """Refresh the maker's TUF repository and return the signed description of ``path``."""
        try:
            updater = self._updater()
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
            info = self.check_release(target)
        except DownloadError as exc:
            self._to(Event.ERROR)
            return Outcome("retry", str(exc))
        except (AssignmentError, VerificationError, CompatibilityError) as exc:
            return self._refuse(dep_id, exc)
        return self.accept(
            target,
            info,
            deployment_id=dep_id,
            counter=assignment.counter,
        )

    def check_release(self, target: TargetFile) -> ReleaseInfo:
        """The device's own checks of a maker-signed release: hardware type, anti-rollback."""
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
        return info

    def install_target(self, path: str) -> Outcome:
        """Install the maker-signed target ``path`` without a director assignment (offline
        bundles, see ``agent/offline.py``): the same TUF refresh from the device's trusted
        metadata, the same hardware and anti-rollback checks, then the usual download, verify
        and switch. Refused while another update is under way."""
        if self.boot is None:
            raise OTAGuardError("after_boot must run before install_target")
        if self.journal.state is not State.IDLE:
            return Outcome("refused", f"an update is under way ({self.journal.state.value})")
        self._to(Event.CHECK)
        try:
            target = self.trusted_target(path)
            info = self.check_release(target)
        except DownloadError as exc:
            self._to(Event.ERROR)
            return Outcome("failed", str(exc))
        except (VerificationError, CompatibilityError, RepositoryError) as exc:
            return self._refuse(None, exc)
        return self.accept(target, info, deployment_id=None)

    def accept(
        self,
        target: TargetFile,
        info: ReleaseInfo,
        *,
        deployment_id: int | None,
        counter: int | None = None,
    ) -> Outcome:
        """Start installing a verified target (journaled, then downloaded and installed)."""
        boot = self.boot
        assert boot is not None
        self._to(
            Event.ACCEPT,
            reports=(
                (UpdateEvent.DOWNLOADING, {"target": target.path, "to_version": info.version}),
            ),
            deployment_id=deployment_id,
            last_counter=counter if counter is not None else self.journal.last_counter,
            target={"path": target.path, **target.to_dict()},
            target_slot=other_slot(boot.slot),
            previous_slot=boot.slot,
            previous_version=boot.header.version,
            new_version=info.version,
            security_version=info.security_version,
            attempt=secrets.token_hex(8),
            bytes_written=0,
            reason="",
        )
        return self._advance()

    def _target(self) -> TargetFile:
        raw = dict(self.journal.target or {})
        path = raw.pop("path")
        return TargetFile.from_dict(raw, path)

    # -- downloading ------------------------------------------------------------------------
    def _cancelled(self, *, force: bool = False) -> bool:
        """Whether the server cancelled this deployment (asked at most every
        ``cancel_check_seconds`` unless ``force``); unknown counts as not cancelled."""
        dep = self.journal.deployment_id
        now = self.clock()
        if dep is None or (
            not force and now - self._last_cancel_check < self.config.cancel_check_seconds
        ):
            return False
        self._last_cancel_check = now
        try:
            r = self.client.get(f"/device/v1/deployments/{dep}/state")
        except httpx.HTTPError:
            return False
        if r.status_code != 200:
            return False
        data = r.json()
        return "cancelled" in (data.get("state"), data.get("status"))

    def _download(self) -> None:
        """Stream the target into the inactive slot, resuming from the journaled checkpoint.

        Retries with exponential backoff and full jitter while the budget lasts: at most
        ``max_download_attempts`` consecutive attempts without progress and
        ``max_download_requests`` requests in all; a permanent error (4xx, more bytes than
        signed) or a cancellation by the server ends the attempt at once.
        """
        j = self.journal
        target = self._target()
        slot = j.target_slot
        assert slot is not None
        url = f"/tuf/targets/{target.get_prefixed_paths()[0]}"
        failures = 0
        requests = 0
        while True:
            offset = min(j.bytes_written, target.length)
            try:
                if requests == 0 and self._cancelled(force=True):
                    raise DownloadCancelled("the server cancelled the deployment")
                requests += 1
                self._fetch(url, target.length, slot, offset)
                if j.bytes_written >= target.length:
                    streamed = self._stream_digest(slot, target.length)
                    if streamed != target.hashes.get("sha256"):
                        self._to(
                            Event.ERROR,
                            reason="verification failed: streamed content does not match the "
                            f"maker-signed sha256 (got {streamed[:16]}...)",
                        )
                        return
                    self._to(
                        Event.DOWNLOADED,
                        reports=((UpdateEvent.DOWNLOADED, {"bytes": target.length}),),
                    )
                    return
                raise DownloadError("connection closed before the whole target arrived")
            except DownloadCancelled as exc:
                self._to(Event.CANCEL, reason=f"download stopped: {exc}")
                return
            except DownloadError as exc:
                failures = 1 if j.bytes_written > offset else failures + 1
                log.info("download attempt %d failed: %s", requests, exc)
                if (
                    exc.permanent
                    or failures >= self.config.max_download_attempts
                    or requests >= self.config.max_download_requests
                ):
                    self._to(
                        Event.ERROR,
                        reason=f"download failed after {requests} request(s): {exc}",
                    )
                    return
                if self._cancelled(force=True):  # before waiting: a cancel ends it now
                    self._to(
                        Event.CANCEL, reason="download stopped: the server cancelled the deployment"
                    )
                    return
                self.sleep(self._backoff(failures))

    def _fetch(self, url: str, length: int, slot: str, offset: int) -> None:
        """One request: bytes from ``offset`` into the slot, checkpointed in the journal (slot
        fsynced first, so a journaled checkpoint is always on the flash)."""
        j = self.journal
        with self.slots.open_write(slot, offset) as w:
            since_checkpoint = 0
            journaled_at = self.clock()

            hasher = self._stream_hasher(slot, offset)
            readback = self._slot_readback(slot, offset)

            def write(chunk: bytes) -> None:
                nonlocal since_checkpoint
                w.write(chunk)
                hasher.update(chunk)
                self._stream_state = (slot, self._stream_state[1] + len(chunk), hasher)
                since_checkpoint += len(chunk)

            def progress(total: int) -> None:
                nonlocal since_checkpoint, journaled_at
                if since_checkpoint >= self.config.checkpoint_bytes and total < length:
                    w.sync()
                    readback.durable(total)
                    since_checkpoint = 0
                    now = self.clock()
                    if now - journaled_at >= self.config.checkpoint_journal_seconds:
                        j.bytes_written = total  # on the medium (synced above)
                        self.journal_file.save(j)
                        journaled_at = now
                    if self._cancelled():
                        raise DownloadCancelled("the server cancelled the deployment")

            try:
                download_into(
                    self.repo_client,
                    url,
                    length=length,
                    offset=offset,
                    write=write,
                    on_progress=progress,
                    # Checkpoints fall between writes: never write more than one apart.
                    write_size=min(WRITE_CHUNK, self.config.checkpoint_bytes),
                )
            finally:
                w.sync()
                j.bytes_written = min(w.tell(), length)
                readback.durable(j.bytes_written)
                self.journal_file.save(j)

    def _slot_readback(self, slot: str, offset: int) -> SlotReadBack:
        """The read-back of this attempt's slot, continued (same process, same attempt) or
        started anew from byte 0 (after a reboot, or when the slot is rewritten from an
        earlier point); what is already durable below ``offset`` is read back at once."""
        attempt = self.journal.attempt or ""
        current = self._readback
        if current is None or current[:2] != (slot, attempt) or current[2].scheduled > offset:
            self._drop_readback()
            current = (slot, attempt, SlotReadBack(self.slots.path(slot)))
            self._readback = current
        current[2].durable(offset)
        return current[2]

    def _read_back(self, slot: str, length: int) -> str | None:
        """The sha256 of the slot's first ``length`` bytes read back from the medium (mostly
        done while the download ran); None if the slot is shorter."""
        try:
            return self._slot_readback(slot, length).digest(length)
        finally:
            self._drop_readback()

    def _drop_readback(self) -> None:
        if self._readback is not None:
            self._readback[2].close()
            self._readback = None

    def _stream_hasher(self, slot: str, offset: int) -> Any:
        """The running sha256 of the slot's first ``offset`` bytes. Kept in memory while the
        download streams; after a reboot or a torn resume it is rebuilt from the slot."""
        cached_slot, upto, hasher = self._stream_state
        if cached_slot != slot or upto != offset or hasher is None:
            if offset:
                with self.slots.open_read(slot) as fh:
                    hasher = hash_prefix(fh.read, offset)
            else:
                hasher = hashlib.sha256()
            self._stream_state = (slot, offset, hasher)
        return hasher

    def _stream_digest(self, slot: str, length: int) -> str:
        return str(self._stream_hasher(slot, length).hexdigest())

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(max, base * 2**(n-1))]."""
        cap = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))
        return self.rng.uniform(0, cap)

    # -- verify and install -----------------------------------------------------------------
    def _verify(self) -> None:
        j = self.journal
        target = self._target()
        slot = j.target_slot
        assert slot is not None
        try:
            self.slots.truncate(slot, target.length)
            got = self._read_back(slot, target.length)
            want = target.hashes.get("sha256", "")
            if got != want:
                raise VerificationError(
                    "slot content does not match the maker-signed sha256 "
                    f"(read back {(got or 'too few bytes')[:16]}..., want {want[:16]}...)"
                )
        except OSError as exc:
            self._to(Event.ERROR, reason=f"verification failed: slot unreadable: {exc}")
            return
        except VerificationError as exc:
            self._to(Event.ERROR, reason=f"verification failed: {exc}")
            return
        if self._cancelled(force=True):
            self._to(Event.CANCEL, reason="the server cancelled the deployment before install")
            return
        self._to(Event.VERIFIED, reports=((UpdateEvent.VERIFIED, {}),))

    def _install(self) -> None:
        """Point the boot env at the new slot, on trial, tagged with this attempt."""
        j = self.journal
        slot = j.target_slot
        assert slot is not None
        self.env.update(
            boot_slot=slot, upgrade_available="1", bootcount="0", **{ATTEMPT_VAR: j.attempt}
        )
        self._to(Event.INSTALLED, reports=self._installed_reports())

    def poll_delay(self) -> float:
        """Seconds until the next poll: the interval with +-``poll_jitter`` uniform jitter."""
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

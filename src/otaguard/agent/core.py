"""The agent's I/O plumbing: its devices, its clients, its journal and its reports.

``AgentCore`` owns what every step of an update touches: the slots, boot environment and
anti-rollback counter, the HTTP clients (rebuilt when the client certificate is renewed), the
journal (``JournalKeeper``) and the outbox of reports. It decides nothing; the steps built on
it (``agent/installing.py``, ``agent/agent.py``) sequence the work and ask the pure modules
(``acceptance``, ``retry``, ``reporting``, ``statemachine``) what to do.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
from tuf.api.metadata import TargetFile

from otaguard.agent.config import AgentConfig
from otaguard.agent.device_api import DeviceApi
from otaguard.agent.health import HealthCheck, command_health_check
from otaguard.agent.health_reporter import HealthReporter
from otaguard.agent.health_reports import HealthProbe
from otaguard.agent.install_window import WAITING_PREFIX, install_gate
from otaguard.agent.journal import Journal, JournalChange, JournalFile
from otaguard.agent.journal_keeper import JournalKeeper
from otaguard.agent.manifest_sequence import FILE_NAME as SEQUENCE_FILE
from otaguard.agent.manifest_sequence import ManifestSequence
from otaguard.agent.outcome import Action, Outcome
from otaguard.agent.renewal import CertificateRenewal
from otaguard.agent.reporting import Report, RunningImage, report_item
from otaguard.agent.slot_stream import SlotStream
from otaguard.agent.statemachine import Event, State
from otaguard.crypto.keys import load_public_key
from otaguard.device.bootenv import BootEnv
from otaguard.device.bootloader import BootResult
from otaguard.device.otp import OtpCounter
from otaguard.device.slots import Slots
from otaguard.device.storage import Storage
from otaguard.fleet.status import UpdateEvent
from otaguard.net.client import DeviceCredentials, make_client

log = logging.getLogger(__name__)


class AgentCore:
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
        wall_clock: Callable[[], dt.datetime] | None = None,
        health_probe: HealthProbe | None = None,
    ) -> None:
        self.config = config
        self.slots = slots
        self.env = env
        self.otp = otp
        self.health_check = health_check or command_health_check(
            config.health_command, config.health_timeout
        )
        self.keeper = JournalKeeper(JournalFile(config.journal_path, storage))
        self.manifest_sequence = ManifestSequence(config.state_dir / SEQUENCE_FILE, storage)
        self.boot: BootResult | None = None
        self.sleep = sleep
        self.clock = clock
        # The time of day, for maintenance windows and the health-report schedule.
        self.wall_clock = wall_clock or (lambda: dt.datetime.now(dt.UTC))
        self.rng = rng or random.Random()
        self.director_key = load_public_key(config.director_key_file)
        # Before the TLS identity is loaded: finishes a renewal a power cut interrupted.
        self.renewal = CertificateRenewal(config, storage, clock=clock)
        self.http_transport = http_transport
        self.client = self.device_client()
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
        self.stream = SlotStream(slots, config, self.keeper)
        self.health_reports = HealthReporter(
            config,
            probe=health_probe,
            check=self.health_now,
            send=lambda body: self.api.send_health(body),
            wall_clock=self.wall_clock,
        )
        self.last_cancel_check = float("-inf")
        # True while confirming a trial boot (``agent confirm``): reports stay in the outbox.
        self.offline = False

    @property
    def journal(self) -> Journal:
        return self.keeper.journal

    @property
    def journal_file(self) -> JournalFile:
        return self.keeper.file

    @property
    def api(self) -> DeviceApi:
        return DeviceApi(self.client)

    def device_client(self) -> httpx.Client:
        config = self.config
        return make_client(
            config.server_url,
            config.ca_file,
            DeviceCredentials(config.device_id, config.credential()),
            timeout=config.request_timeout,
            transport=self.http_transport,
            client_cert=config.client_cert,
        )

    def renew_certificate(self) -> bool:
        """Renew the client certificate when it is due (agent/renewal.py), then reconnect so
        the next request presents the new one. A failure keeps the old one (retried later)."""
        if not self.renewal.maybe_renew(self.client):
            return False
        old, self.client = self.client, self.device_client()
        if self.repo_client is old:
            self.repo_client = self.client
        old.close()
        return True

    def health_now(self) -> bool | None:
        """The health check's verdict on the running image, for a health report."""
        if self.boot is None:
            return None
        try:
            return self.health_check(self.boot)[0]
        except Exception:  # a broken health check is an unhealthy image
            return False

    def report_health(self) -> None:
        """Send the health report that is due (``agent/health_reporter.py``); never fails."""
        if self.offline:
            return
        try:
            sent = self.health_reports.maybe_report(self.current_version())
        except Exception as exc:  # reporting health must never stop an update cycle
            log.warning("health report skipped: %s: %s", type(exc).__name__, exc)
            return
        if sent is not None:
            log.info("health report sent", extra={"kind": sent.value})

    def close(self) -> None:
        self.stream.drop_readback()
        self.client.close()
        if self.repo_client is not self.client:
            self.repo_client.close()

    # -- journal and reports ----------------------------------------------------------------
    def transition(
        self,
        event: Event,
        change: JournalChange | None = None,
        *,
        reports: tuple[Report, ...] = (),
        report_deployment: int | None = None,
    ) -> None:
        """Take a transition: new state, change and queued reports saved in one atomic journal
        write (see ``JournalKeeper.transition``), then try to send the reports."""

        def items() -> list[dict[str, Any]]:
            return [self.report_item(kind, detail, report_deployment) for kind, detail in reports]

        self.keeper.transition(event, change, items if reports else None)
        if reports:
            self.flush_reports()

    def report_item(
        self, event: UpdateEvent, detail: dict[str, Any], deployment_id: int | None = None
    ) -> dict[str, Any]:
        boot = self.boot
        return report_item(
            event,
            detail,
            report_id=secrets.token_hex(16),
            deployment_id=deployment_id
            if deployment_id is not None
            else self.journal.deployment_id,
            running=RunningImage(self.current_version(), boot.slot)
            if boot
            else RunningImage(None, None),
        )

    def flush_reports(self) -> bool:
        """Send queued reports in order; keep the rest if the server is unreachable.

        Delivery is at least once and in order: a power cut between a send and the journal save
        that drops it from the outbox sends it again, followed by everything after it.
        """
        if self.offline:
            return not self.journal.outbox
        return self.keeper.flush(self.api.send_report)

    def waiting(self, reason: str) -> Outcome:
        """A transient obstacle outlasted this cycle's retries: keep the journaled state, tell
        the server once per reason ("waiting: <reason>"), retry at the next poll."""
        text = f"waiting: {reason}"
        if self.journal.reason != text:
            self.journal.reason = text
            self.journal.outbox.append(self.report_item(UpdateEvent.WAITING, {"reason": text}))
            self.keeper.save()
            self.flush_reports()
        return Outcome(Action.RETRY, text)

    def target(self) -> TargetFile:
        """The accepted target, as journaled."""
        raw = dict(self.journal.target or {})
        path = raw.pop("path")
        return TargetFile.from_dict(raw, path)

    def cancelled(self, *, force: bool = False) -> bool:
        """Whether the server cancelled this deployment (asked at most every
        ``cancel_check_seconds`` unless ``force``); unknown counts as not cancelled."""
        dep = self.journal.deployment_id
        now = self.clock()
        if dep is None or (
            not force and now - self.last_cancel_check < self.config.cancel_check_seconds
        ):
            return False
        self.last_cancel_check = now
        state = self.api.deployment_state(dep)
        return state is not None and state.cancelled

    def current_version(self) -> str | None:
        """What the booted slot runs: the release the journal says it holds (else what the
        boot reported, e.g. the simulated boot ROM); never read from the image."""
        return self.slot_version(self.boot.slot) if self.boot else None

    def slot_version(self, slot: str) -> str | None:
        known = self.journal.slot_versions.get(slot)
        if known is None and self.boot is not None and self.boot.slot == slot:
            return self.boot.version
        return known

    def poll_delay(self) -> float:
        """Seconds until the next poll: the interval with +-``poll_jitter`` uniform jitter, or
        less when a health report falls due or the maintenance window the update waits for
        opens sooner (a device that polls rarely still reports and installs on time)."""
        base = self.config.poll_interval
        delay = base * (1 + self.rng.uniform(-self.config.poll_jitter, self.config.poll_jitter))
        wake = self.wake_in()
        return delay if wake is None else min(delay, wake)

    def wake_in(self) -> float | None:
        """Seconds until something other than the poll needs the agent, if anything does."""
        times = []
        if self.journal.state is State.IDLE:
            until = self.health_reports.seconds_until_due()
            if until is not None and until > 0:  # due now (and failing): the poll's pace
                times.append(until)
        if self.journal.reason.startswith(f"waiting: {WAITING_PREFIX}"):
            now = self.wall_clock()
            opens = install_gate(self.config.schedule, now).opens_at
            if opens is not None:  # a little spread: a fleet's windows open together
                times.append(max(1.0, (opens - now).total_seconds()) + self.rng.uniform(0, 30))
        return min(times) if times else None

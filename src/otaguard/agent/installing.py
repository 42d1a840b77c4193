"""The journaled states of an accepted update, from download to the final report.

``Installer.advance`` does the work of the journaled state, state after state, until the
update waits for a reboot or is over. Every step is idempotent, so after a power cut it is
simply redone. The decisions are pure and live elsewhere: the retry budget and stream verdict
in ``agent/retry.py``, the final report in ``agent/reporting.py``, the next state in
``agent/statemachine.py``; this module does the I/O they ask for (slot, boot env, fuses).
"""

from __future__ import annotations

import logging

from tuf.api.metadata import TargetFile

from otaguard.agent.delta_choice import Failure, on_failure
from otaguard.agent.delta_steps import DeltaSteps
from otaguard.agent.install_window import WAITING_PREFIX, install_gate
from otaguard.agent.journal import EndUpdate, SetReason, SlotHolds
from otaguard.agent.outcome import Action, Outcome
from otaguard.agent.reporting import final_report, installed_reports
from otaguard.agent.retry import RetryBudget, StreamVerdict, backoff_cap, stream_verdict
from otaguard.agent.statemachine import Event, State
from otaguard.device.slots import other_slot
from otaguard.errors import DownloadCancelled, DownloadError, VerificationError
from otaguard.fleet.status import UpdateEvent
from otaguard.repo.images import ReleaseInfo

log = logging.getLogger(__name__)

ATTEMPT_VAR = "ota_attempt"  # boot env variable tagging the switch made by one update attempt


class Installer(DeltaSteps):
    def advance(self) -> Outcome:
        """Do the work of the journaled state, state after state, until the update waits for
        a reboot or is over. Every step is idempotent: after a power cut it is simply redone."""
        j = self.journal
        outcome = Outcome(Action.IDLE)
        while True:
            state = j.state
            if state is State.IDLE:
                return outcome
            if state is State.DOWNLOADING:
                waiting = self.download()
                if waiting is not None:
                    return waiting
            elif state is State.VERIFYING:
                self.verify()
            elif state is State.INSTALLING:
                waiting = None if self.switched() else self.outside_window(may_cancel=True)
                if waiting is not None:
                    return waiting
                if j.state is State.INSTALLING:  # not cancelled while it waited
                    self.install()
            elif state is State.REBOOT_PENDING:
                waiting = self.outside_window(may_cancel=False)
                if waiting is not None:
                    return waiting
                return Outcome(
                    Action.REBOOT, f"installed {j.new_version} into slot {j.target_slot}"
                )
            elif state is State.TRIAL:
                self.transition(Event.CHECK_HEALTH)
            elif state is State.HEALTH_CHECK:
                self.check_health()
            elif state is State.COMMITTING:
                self.commit()
            elif state is State.ROLLING_BACK:
                prev = j.previous_slot or other_slot(j.target_slot or "a")
                self.env.update(boot_slot=prev, upgrade_available="0", bootcount="0")
                return Outcome(Action.REBOOT, f"rolling back to slot {prev}: {j.reason}")
            else:
                outcome = self.finish()

    # -- downloading ------------------------------------------------------------------------
    def download(self) -> Outcome | None:
        """Stream the target into the inactive slot, resuming from the journaled checkpoint.

        Retries with exponential backoff and full jitter while the ``RetryBudget`` lasts; a
        permanent error (4xx, more bytes than signed) or a cancellation by the server ends the
        attempt at once. A transient one (unreachable, 5xx, disk full) that outlasts the budget
        does not: the update stays journaled as downloading, the server hears "waiting:
        <reason>", and the next poll resumes (returns that ``RETRY`` outcome).
        """
        j = self.journal
        if j.delta is not None:  # rebuild from a delta (agent/delta_steps.py)
            return self.delta_download()
        target = self.target()
        slot = j.target_slot
        assert slot is not None
        url = f"/tuf/targets/{target.get_prefixed_paths()[0]}"
        budget = RetryBudget(self.config.max_download_attempts, self.config.max_download_requests)
        while True:
            before = min(j.bytes_written, target.length)
            try:
                if budget.requests == 0 and self.cancelled(force=True):
                    raise DownloadCancelled("the server cancelled the deployment")
                budget.start_request()
                self.fetch(target, url, slot, before)
                if self.downloaded(target, slot):
                    return None
                error = DownloadError("connection closed before the whole target arrived")
            except DownloadCancelled as exc:
                self.transition(Event.CANCEL, SetReason(f"download stopped: {exc}"))
                return None
            except VerificationError as exc:
                self.transition(Event.ERROR, SetReason(f"verification failed: {exc}"))
                return None
            except OSError as exc:  # the slot's storage: disk full, I/O error
                error = DownloadError(f"cannot write slot {slot}: {exc.strerror or exc}")
            except DownloadError as exc:
                error = exc
            log.info("download attempt %d failed: %s", budget.requests, error)
            if budget.after_failure(progressed=j.bytes_written > before, permanent=error.permanent):
                if not error.permanent:
                    return self.waiting(f"download: {error}")
                reason = f"download failed after {budget.requests} request(s): {error}"
                self.transition(Event.ERROR, SetReason(reason))
                return None
            if self.cancelled(force=True):  # before waiting: a cancel ends it now
                reason = "download stopped: the server cancelled the deployment"
                self.transition(Event.CANCEL, SetReason(reason))
                return None
            cap = backoff_cap(
                budget.failures, base=self.config.backoff_base, maximum=self.config.backoff_max
            )
            self.sleep(self.rng.uniform(0, cap))

    def fetch(self, target: TargetFile, url: str, slot: str, offset: int) -> None:
        """One request: the artifact into the slot, from ``offset`` (a raw image) or
        decompressed from byte 0 (a compressed one, see ``SlotStream.fetch_compressed``)."""
        info = ReleaseInfo.of_target(target)
        if info.compression is not None and info.image_length is not None:
            self.stream.fetch_compressed(
                self.repo_client,
                url,
                length=target.length,
                slot=slot,
                compression=(info.compression, info.image_length),
                cancelled=self.cancelled,
            )
            return
        self.stream.fetch(
            self.repo_client,
            url,
            length=target.length,
            slot=slot,
            offset=offset,
            clock=self.clock,
            cancelled=self.cancelled,
        )

    def downloaded(self, target: TargetFile, slot: str) -> bool:
        """After a request ended cleanly: move on when the whole target is in (DOWNLOADED, or
        ERROR if what streamed does not match the signed hash); False when bytes are missing."""
        written = self.journal.bytes_written
        signed = target.hashes.get("sha256", "")
        streamed = (
            self.stream.streamed_digest(slot, target.length) if written >= target.length else None
        )
        verdict = stream_verdict(written, target.length, streamed, signed)
        if verdict is StreamVerdict.SHORT:
            return False
        if verdict is StreamVerdict.CORRUPT:
            reason = (
                "verification failed: streamed content does not match the maker-signed sha256 "
                f"(got {(streamed or '')[:16]}...)"
            )
            self.transition(Event.ERROR, SetReason(reason))
        else:
            reports = ((UpdateEvent.DOWNLOADED, {"bytes": target.length}),)
            self.transition(Event.DOWNLOADED, reports=reports)
        return True

    # -- verify and install -----------------------------------------------------------------
    def verify(self) -> None:
        j = self.journal
        target = self.target()
        slot = j.target_slot
        assert slot is not None
        want, length = self.slot_content(target)
        try:
            self.slots.truncate(slot, length)
            got = self.stream.read_back(slot, length)
            if got != want:
                raise VerificationError(
                    "slot content does not match the maker-signed sha256 "
                    f"(read back {(got or 'too few bytes')[:16]}..., want {want[:16]}...)"
                )
        except OSError as exc:
            self.verify_failed(f"slot unreadable: {exc}")
            return
        except VerificationError as exc:
            self.verify_failed(str(exc))
            return
        if self.cancelled(force=True):
            reason = "the server cancelled the deployment before install"
            self.transition(Event.CANCEL, SetReason(reason))
            return
        self.transition(
            Event.VERIFIED,
            SlotHolds(slot, j.new_version, want),
            reports=((UpdateEvent.VERIFIED, {}),),
        )

    def verify_failed(self, why: str) -> None:
        """A slot that does not verify: the full image instead if it was rebuilt from a
        delta (once), else the update fails."""
        if on_failure(self.journal.delta is not None):
            self.delta_fallback(Failure.HASH, why)
        else:
            self.transition(Event.ERROR, SetReason(f"verification failed: {why}"))

    def switched(self) -> bool:
        """The boot environment already carries this attempt's switch (done before a power
        cut): finishing it is not a new install, whatever the time."""
        return (
            bool(self.journal.attempt) and self.env.read().get(ATTEMPT_VAR) == self.journal.attempt
        )

    def outside_window(self, *, may_cancel: bool) -> Outcome | None:
        """None when the device's maintenance windows allow installing now; else the waiting
        outcome (reported once per opening: ``agent/install_window.py``). While it waits
        before the switch (``may_cancel``), a deployment the server cancelled or aborted ends
        here (FAILED, reported): nothing was installed."""
        gate = install_gate(self.config.schedule, self.wall_clock())
        if gate.open:
            if self.journal.reason.startswith(f"waiting: {WAITING_PREFIX}"):
                self.journal.reason = ""  # not the reason of whatever comes next
            return None
        if may_cancel and self.cancelled():
            reason = "the server cancelled the deployment while it waited for a maintenance window"
            self.transition(Event.CANCEL, SetReason(reason))
            return None
        return self.waiting(gate.reason)

    def install(self) -> None:
        """Point the boot env at the new slot, on trial, tagged with this attempt."""
        j = self.journal
        slot = j.target_slot
        assert slot is not None
        self.env.update(
            boot_slot=slot, upgrade_available="1", bootcount="0", **{ATTEMPT_VAR: j.attempt}
        )
        self.transition(Event.INSTALLED, reports=installed_reports(slot))

    # -- trial, commit, final report --------------------------------------------------------
    def check_health(self) -> None:
        boot = self.boot
        assert boot is not None
        try:
            healthy, why = self.health_check(boot)
        except Exception as exc:  # a broken health check is an unhealthy image
            healthy, why = False, f"health check raised {type(exc).__name__}: {exc}"
        if healthy:
            self.transition(Event.HEALTHY)
        else:
            self.transition(Event.UNHEALTHY, SetReason(f"health check failed: {why}"))

    def commit(self) -> None:
        j = self.journal
        env = self.env.read()
        if env.get("upgrade_available") != "0" or env.get("bootcount") != "0":
            self.env.update(upgrade_available="0", bootcount="0")
        self.otp.raise_to(j.security_version)  # only once the new slot is committed
        self.transition(Event.COMMIT_DONE)

    def finish(self) -> Outcome:
        """Queue the final report with the transition back to idle (one journal write)."""
        j = self.journal
        if j.state is State.COMMITTED:
            self.health_reports.committed(j.new_version)  # its health window starts
        report, outcome = final_report(j.state, j.reason, self.otp.value())
        self.transition(Event.REPORTED, EndUpdate(), reports=(report,))
        self.remove_patch()  # a delta's patch a power cut left behind
        return outcome

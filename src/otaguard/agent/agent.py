"""The device agent: check in, verify, stream into the inactive slot, switch, trial, commit.

Every state is journaled before its work starts, and every state's work is idempotent (see
``statemachine.py`` for the states and for ``boot_event``, the pure decision of what a boot
means for the journaled state), so the agent can be killed or lose power anywhere and, after
the next boot, ``after_boot`` and ``run_once`` redo the journaled state's work. Nothing is
installed that did not pass, in this order: the director assignment (signature, device,
expiry, counter), the TUF refresh of the maker's repository, the match between the two, the
hardware and anti-rollback checks (all decided in ``acceptance.py``), and the length and hash
check of the bytes written to the slot (read back from the slot, not from memory).

The class is layered: ``AgentCore`` (``core.py``: devices, clients, journal, reports),
``Installer`` (``installing.py``: the states from download to the final report) and
``UpdateAgent`` here (boot reconciliation, check-in and acceptance).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from tuf.api.metadata import TargetFile

from otaguard import __version__
from otaguard.agent.acceptance import DeviceFacts, accept_assignment, accept_target
from otaguard.agent.acceptance import check_release as check_release_facts
from otaguard.agent.health import HealthCheck, command_health_check
from otaguard.agent.installing import ATTEMPT_VAR, Installer
from otaguard.agent.journal import DeltaJob, Journal, SetReason, StartUpdate
from otaguard.agent.outcome import Action, Outcome
from otaguard.agent.replies import CheckInReply
from otaguard.agent.reporting import boot_reason, installed_reports, refusal_report
from otaguard.agent.statemachine import FINAL, BootFacts, Event, State, boot_event
from otaguard.agent.trusted_repo import trusted_target
from otaguard.device.bootloader import BootResult
from otaguard.device.slots import other_slot
from otaguard.errors import (
    AssignmentError,
    CompatibilityError,
    DownloadError,
    OTAGuardError,
    RepositoryError,
    VerificationError,
)
from otaguard.fleet.status import UpdateEvent
from otaguard.repo.images import ReleaseInfo

__all__ = [
    "ATTEMPT_VAR",
    "Action",
    "HealthCheck",
    "Outcome",
    "UpdateAgent",
    "command_health_check",
    "describe",
]

log = logging.getLogger(__name__)


class UpdateAgent(Installer):
    # -- boot -------------------------------------------------------------------------------
    def boot_facts(self, boot: BootResult) -> BootFacts:
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
        self.health_reports.booted()
        j = self.journal
        if j.state is State.CHECKING:  # never journaled; defensive
            j.state = State.IDLE
        if boot.version is not None and boot.slot not in j.slot_versions:
            # The boot told what the slot runs (the simulated boot ROM does): remember it.
            j.slot_versions[boot.slot] = boot.version
            self.keeper.save()
        while j.state not in (State.IDLE, *FINAL):
            event = boot_event(j.state, self.boot_facts(boot))
            if event is None:
                break
            self.on_boot_event(event, boot)
        if j.state is State.DOWNLOADING:
            self.flush_reports()
            return Outcome(Action.IDLE, "download resumes on the next poll")
        outcome = self.advance()
        self.flush_reports()
        return outcome

    def on_boot_event(self, event: Event, boot: BootResult) -> None:
        j = self.journal
        if event is Event.BOOTED_NEW:
            self.transition(event, reports=((UpdateEvent.BOOTED, {}),))
        elif event is Event.INSTALLED:
            self.transition(event, reports=installed_reports(j.target_slot))
        else:
            reason = boot_reason(
                event,
                j.state,
                journaled=j.reason,
                boot_reason=boot.reason,
                booted_slot=boot.slot,
                target_slot=j.target_slot,
            )
            self.transition(event, SetReason(reason) if reason is not None else None)

    # -- the update loop --------------------------------------------------------------------
    def check_in(self) -> CheckInReply:
        """Send a version manifest signed with the device key (DSSE); return the reply.

        Raises:
            DownloadError: the manifest cannot be signed (permanent), the server is
                unreachable or refuses the check-in.
            ReplyError: the server's answer is malformed.
        """
        from otaguard.agent.manifest_key import manifest_signer
        from otaguard.director.manifest import VersionManifest, sign_manifest

        boot = self.boot
        try:
            sequence = self.manifest_sequence.take()  # durable before the manifest leaves
        except OSError as exc:
            raise DownloadError(f"cannot reserve a manifest sequence number: {exc}") from exc
        except OTAGuardError as exc:
            raise DownloadError(
                f"cannot number the version manifest: {exc}", permanent=True
            ) from exc
        manifest = VersionManifest.create(
            device_id=self.config.device_id,
            hardware=self.config.hardware,
            version=self.current_version(),
            slot=boot.slot if boot else None,
            security_version=self.otp.value(),
            agent_version=__version__,
            image_sha256=self.journal.slot_images.get(boot.slot) if boot else None,
            sequence=sequence,
        )
        try:
            body = {"manifest": sign_manifest(manifest, manifest_signer(self.config))}
        except OTAGuardError as exc:
            raise DownloadError(f"cannot sign the version manifest: {exc}", permanent=True) from exc
        return self.api.check_in(body)

    def run_once(self) -> Outcome:
        """One polling cycle: go on with an unfinished update, or check in and maybe start one."""
        if self.boot is None:
            raise OTAGuardError("after_boot must run before run_once")
        self.renew_certificate()
        delivered = self.flush_reports()
        if self.journal.state is not State.IDLE:
            return self.advance()
        if not delivered:
            # The server has not heard how the last update ended; checking in now could get
            # the same deployment offered again (and reinstalled). Report first.
            return Outcome(Action.RETRY, "reports not yet delivered; not checking in")
        self.learn_active_image()
        self.transition(Event.CHECK)
        try:
            reply = self.check_in()
        except DownloadError as exc:
            self.transition(Event.ERROR)
            return Outcome(Action.RETRY, str(exc))
        if reply.assignment is None:
            self.transition(Event.NOTHING)
            self.report_health()  # idle and the server is reachable: the gate's signals
            return Outcome(Action.IDLE)
        return self.start(reply.assignment, reply.deployment_id)

    def device_facts(self) -> DeviceFacts:
        return DeviceFacts(
            device_id=self.config.device_id,
            hardware=self.config.hardware,
            security_version=self.otp.value(),
            last_counter=self.journal.last_counter,
        )

    def start(self, assignment_bytes: bytes, deployment_id: int | None) -> Outcome:
        """Judge an offered assignment (``acceptance.py``, with the TUF refresh between its
        steps) and start the update, or refuse it (reported) or retry later (unreachable)."""
        dep_id = deployment_id
        try:
            assignment = accept_assignment(assignment_bytes, self.director_key, self.device_facts())
            dep_id = assignment.deployment_id
            target = self.trusted_target(assignment.target.path)
            info = accept_target(target, self.device_facts(), assignment)
        except DownloadError as exc:
            # Transient (metadata unreachable, expired or stale): not a failure of the release.
            text = f"waiting: {exc}"
            reports = ((UpdateEvent.WAITING, {"reason": text}),) if dep_id is not None else ()
            self.transition(Event.ERROR, reports=reports, report_deployment=dep_id)
            return Outcome(Action.RETRY, text)
        except (AssignmentError, VerificationError, CompatibilityError) as exc:
            return self.refuse(dep_id, exc)
        try:
            delta, not_used = self.delta_offer(assignment.delta_path, target)
        except DownloadError as exc:
            text = f"waiting: {exc}"
            reports = ((UpdateEvent.WAITING, {"reason": text}),)
            self.transition(Event.ERROR, reports=reports, report_deployment=dep_id)
            return Outcome(Action.RETRY, text)
        return self.accept(
            target,
            info,
            deployment_id=dep_id,
            counter=assignment.counter,
            delta=delta,
            delta_fallback=not_used,
        )

    def refuse(self, deployment_id: int | None, exc: OTAGuardError) -> Outcome:
        log.warning("refused update: %s", exc)
        self.transition(
            Event.REFUSE,
            reports=(refusal_report(str(exc), exc.code),),
            report_deployment=deployment_id,
        )
        return Outcome(Action.REFUSED, str(exc))

    def trusted_target(self, path: str) -> TargetFile:
        """Refresh the maker's TUF repository and return the signed description of ``path``.

        Raises:
            DownloadError: the repository's metadata cannot be fetched (retry later).
            VerificationError: the metadata does not verify, or ``path`` is not signed.
        """
        return trusted_target(self.config, self.repo_client, path)

    def check_release(self, target: TargetFile) -> ReleaseInfo:
        """The device's own checks of a maker-signed release: hardware type, anti-rollback.

        Raises:
            CompatibilityError: other hardware, or a security version below the counter.
        """
        return check_release_facts(target, self.device_facts())

    def install_target(self, path: str, deltas: tuple[str, ...] = ()) -> Outcome:
        """Install the maker-signed target ``path`` without a director assignment (offline
        bundles, see ``agent/offline.py``): the same TUF refresh from the device's trusted
        metadata, the same hardware and anti-rollback checks, then the usual download, verify
        and switch; rebuilt from one of the delta targets ``deltas`` (a bundle's) when one
        fits the active slot. Refused while another update is under way."""
        if self.boot is None:
            raise OTAGuardError("after_boot must run before install_target")
        if self.journal.state is not State.IDLE:
            return Outcome(Action.REFUSED, f"an update is under way ({self.journal.state.value})")
        self.transition(Event.CHECK)
        try:
            target = self.trusted_target(path)
            info = accept_target(target, self.device_facts())
            delta, not_used = self.first_delta(deltas, target)
        except DownloadError as exc:
            self.transition(Event.ERROR)
            return Outcome(Action.FAILED, str(exc))
        except (VerificationError, CompatibilityError, RepositoryError) as exc:
            return self.refuse(None, exc)
        return self.accept(target, info, deployment_id=None, delta=delta, delta_fallback=not_used)

    def accept(
        self,
        target: TargetFile,
        info: ReleaseInfo,
        *,
        deployment_id: int | None,
        counter: int | None = None,
        delta: DeltaJob | None = None,
        delta_fallback: str = "",
    ) -> Outcome:
        """Start installing a verified target (journaled, then downloaded and installed),
        rebuilt from ``delta`` if given (``delta_fallback``: why an offered delta is not)."""
        boot = self.boot
        assert boot is not None
        start = StartUpdate(
            deployment_id=deployment_id,
            last_counter=counter if counter is not None else self.journal.last_counter,
            target={"path": target.path, **target.to_dict()},
            target_slot=other_slot(boot.slot),
            previous_slot=boot.slot,
            previous_version=self.current_version(),
            new_version=info.version,
            security_version=info.security_version,
            attempt=secrets.token_hex(8),
            delta=delta,
            delta_fallback=delta_fallback,
        )
        detail = {
            "target": target.path,
            "to_version": info.version,
            "delta": delta.target["path"] if delta is not None else None,
            "delta_fallback": delta_fallback or None,
        }
        reports = ((UpdateEvent.DOWNLOADING, detail),)
        self.transition(Event.ACCEPT, start, reports=reports)
        return self.advance()


def describe(journal: Journal) -> dict[str, Any]:
    return {
        "state": journal.state.value,
        "deployment_id": journal.deployment_id,
        "target": (journal.target or {}).get("path"),
        "bytes_written": journal.bytes_written,
        "pending_reports": len(journal.outbox),
    }

"""The delta install's I/O: choose at accept time, fetch the patch, verify it, rebuild the slot.

When an accepted assignment offers a delta (``Assignment.delta_path``), ``delta_offer`` looks
the delta target up through the agent's TUF client, so everything about it comes from
maker-signed metadata, and asks ``agent/delta_choice.py`` whether it rebuilds the assigned
image from what the active slot holds (hashing the active slot once if the journal does not
know its hash). The journaled ``DeltaJob`` then drives the ``downloading`` state:

1. *fetch*: the patch streams into the state directory through the storage layer, resumable
   (HTTP Range) from the journaled offset, checkpointed like a slot download;
2. its bytes at rest are checked against the signed length and hashes
   (``TargetFile.verify_length_and_hashes``) *before* a byte reaches the decoder;
3. *apply*: ``delta.DeltaDecoder`` reads the source from the active slot and writes the
   inactive one in bounded memory; after each segment the slot is fsynced and the segment
   journaled, so a power cut resumes at the last durable segment (the decoder re-hashes the
   slot's prefix) and never leaves anything bootable half-built (the slot switch comes only
   after ``verifying`` read the whole slot back against the signed full-image hash).

Any failure falls back to the full image once (``DeltaFallback`` forgets the delta), reported
to the server as ``delta_fallback`` in a ``downloading`` report.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, cast

from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import TargetFile

from otaguard.agent.core import AgentCore
from otaguard.agent.delta_choice import (
    Failure,
    Phase,
    Source,
    check_offer,
    delta_order,
    fallback_reason,
    source_mismatch_reason,
    source_verdict,
)
from otaguard.agent.journal import (
    DeltaFallback,
    DeltaJob,
    DeltaProgress,
    SetReason,
    SlotHashed,
    apply_change,
)
from otaguard.agent.outcome import Outcome
from otaguard.agent.retry import RetryBudget, backoff_cap
from otaguard.agent.statemachine import Event
from otaguard.agent.trusted_repo import trusted_target
from otaguard.delta import Checkpoint, DeltaDecoder
from otaguard.device.slots import BlockDeviceSlots, FileSlots
from otaguard.errors import (
    DeltaError,
    DeltaTargetMismatchError,
    DownloadCancelled,
    DownloadError,
    InstallError,
    VerificationError,
)
from otaguard.fleet.status import UpdateEvent
from otaguard.net.download import WRITE_CHUNK, download_into, hash_prefix
from otaguard.repo.delta_targets import DeltaTarget, parse_delta_target
from otaguard.repo.images import ReleaseInfo

log = logging.getLogger(__name__)

#: The largest plain-file slot ``learn_active_image`` hashes (bounded work at a cycle's start).
MAX_HASHED_SLOT = 4 << 30


class SlotPrefix:
    """The first ``length`` bytes of a slot as a file (a block device is larger than its
    image; the decoder sizes its source with ``seek(0, 2)``)."""

    def __init__(self, fh: BinaryIO, length: int) -> None:
        self._fh, self._len, self._pos = fh, length, 0

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = (0, self._pos, self._len)[whence] + offset
        return self._pos

    def read(self, size: int = -1) -> bytes:
        size = self._len - self._pos if size < 0 else min(size, self._len - self._pos)
        self._fh.seek(self._pos)
        data = self._fh.read(max(0, size))
        self._pos += len(data)
        return data


def job_target(job: DeltaJob) -> TargetFile:
    raw = dict(job.target)
    path = raw.pop("path")
    return TargetFile.from_dict(raw, path)


class DeltaSteps(AgentCore):
    @staticmethod
    def slot_content(target: TargetFile) -> tuple[str, int]:
        """The signed sha256 and length of what the slot must hold once the target is in: the
        artifact itself, or the image a compressed artifact decompresses to."""
        info = ReleaseInfo.of_target(target)
        if info.compression is not None and info.image_sha256 and info.image_length is not None:
            return info.image_sha256, info.image_length
        return target.hashes.get("sha256", ""), target.length

    def record(self, change: DeltaProgress | SlotHashed) -> None:
        """A journal change without a state change (progress, a learnt hash), saved at once."""
        apply_change(self.journal, change)
        self.keeper.save()

    def learn_active_image(self) -> None:
        """A factory image whose version the journal knows but whose sha256 it does not (a
        device provisioned before provisioning recorded hashes): when the active slot is a
        plain file (its length is the image's), hash it once, bounded by ``MAX_HASHED_SLOT``,
        and journal it, so the version manifest names the image and a delta can be offered.
        A boot that read the image's header itself (the simulated boot ROM) is left as it
        was: such devices learn their hashes when an image verifies, or at a delta offer."""
        boot = self.boot
        if boot is None or boot.header is not None or boot.slot in self.journal.slot_images:
            return
        plain = isinstance(self.slots, FileSlots) and not isinstance(self.slots, BlockDeviceSlots)
        if boot.slot not in self.journal.slot_versions or not plain:
            return
        try:
            with self.slots.open_read(boot.slot) as fh:
                size = fh.seek(0, 2)
                fh.seek(0)
                if not 0 < size <= MAX_HASHED_SLOT:
                    return
                digest = str(hash_prefix(fh.read, size).hexdigest())
        except (OSError, InstallError) as exc:
            log.warning("cannot hash active slot %s: %s", boot.slot, exc)
            return
        log.info("active slot %s hashed once (%d bytes): image %s", boot.slot, size, digest)
        self.record(SlotHashed(boot.slot, digest))

    def patch_path(self) -> Path:
        return self.config.state_dir / "delta" / "patch.otadelta"

    # -- choosing ---------------------------------------------------------------------------
    def delta_offer(self, delta_path: str | None, full: TargetFile) -> tuple[DeltaJob | None, str]:
        """The delta job for an accepted ``full`` target, or None and why not ("" when no
        delta was offered). Raises ``DownloadError`` when the repository is unreachable."""
        if delta_path is None:
            return None, ""
        boot = self.boot
        assert boot is not None
        try:
            signed = trusted_target(self.config, self.repo_client, delta_path)
            meta = check_offer(signed, full)
        except (VerificationError, DeltaError) as exc:
            return None, fallback_reason(Failure.UNAVAILABLE, str(exc))
        why = source_mismatch_reason(meta, self.active_image(boot.slot, meta))
        if why is not None:
            return None, f"delta not used: {why}"
        job = DeltaJob({"path": signed.path, **signed.to_dict()}, boot.slot, meta.source_length)
        return job, ""

    def first_delta(self, paths: Sequence[str], full: TargetFile) -> tuple[DeltaJob | None, str]:
        """The first of several offered deltas (an offline bundle's) that fits, tried in
        ``delta_choice.delta_order``; else None and every reason."""
        boot = self.boot
        assert boot is not None
        reasons = []
        for path in delta_order(paths, self.journal.slot_images.get(boot.slot)):
            job, why = self.delta_offer(path, full)
            if job is not None:
                return job, ""
            reasons.append(why)
        return None, "; ".join(reasons)

    def active_image(self, slot: str, meta: DeltaTarget) -> str | None:
        """The sha256 of the image the journal knows ``slot`` holds; unknown: the slot's first
        ``source_length`` bytes hashed once, journaled if they are the delta's source (None
        if they are not, or the slot is shorter or unreadable)."""
        known = self.journal.slot_images.get(slot)
        if source_verdict(meta, known) is not Source.UNKNOWN:
            return known
        try:
            with self.slots.open_read(slot) as fh:
                size = fh.seek(0, 2)
                fh.seek(0)
                hasher = hash_prefix(fh.read, meta.source_length)
        except (OSError, InstallError) as exc:
            log.warning("cannot hash slot %s: %s", slot, exc)
            return None
        digest = str(hasher.hexdigest())
        if size < meta.source_length or digest != meta.source_sha256:
            return None
        self.record(SlotHashed(slot, digest))
        return digest

    # -- the downloading state with a delta -------------------------------------------------
    def delta_download(self) -> Outcome | None:
        """The ``downloading`` work while the journal holds a delta job; None when the state
        moved on (rebuilt, fell back, cancelled), an ``Outcome`` to wait for the next poll."""
        assert self.journal.delta is not None
        job = DeltaJob.from_dict(self.journal.delta)
        if job.phase == Phase.FETCH:
            waiting = self.fetch_patch(job)
            if waiting is not None or self.journal.delta is None:
                return waiting
            job = DeltaJob.from_dict(self.journal.delta)
            if job.phase == Phase.FETCH:
                return None  # cancelled or failed
        self.apply_patch(job)
        return None

    def fetch_patch(self, job: DeltaJob) -> Outcome | None:
        """Fetch the patch (retries, backoff and waiting as for an image); phase ``apply``
        once every byte is durable (``apply_patch`` checks them against the signed hash)."""
        target = job_target(job)
        url = f"/tuf/targets/{target.get_prefixed_paths()[0]}"
        budget = RetryBudget(self.config.max_download_attempts, self.config.max_download_requests)
        while job.fetched < target.length:
            before = job.fetched
            try:
                budget.start_request()
                job = self.fetch_patch_once(job, target, url)
                if job.fetched >= target.length:
                    break
                error = DownloadError("connection closed before the whole delta arrived")
            except DownloadCancelled as exc:
                self.cancel(f"download stopped: {exc}")
                return None
            except OSError as exc:
                self.delta_fallback(Failure.STORAGE, f"cannot write the patch: {exc}")
                return None
            except DownloadError as exc:
                error = exc
            if budget.after_failure(progressed=job.fetched > before, permanent=error.permanent):
                if not error.permanent:
                    return self.waiting(f"delta download: {error}")
                self.delta_fallback(Failure.UNAVAILABLE, str(error))
                return None
            cap = backoff_cap(
                budget.failures, base=self.config.backoff_base, maximum=self.config.backoff_max
            )
            self.sleep(self.rng.uniform(0, cap))
        self.record(DeltaProgress(replace(job, phase=Phase.APPLY)))
        return None

    def fetch_patch_once(self, job: DeltaJob, target: TargetFile, url: str) -> DeltaJob:
        """One request for the patch from the journaled offset; returns the job as far as it
        got (journaled, the patch file fsynced first)."""
        storage = self.keeper.file.storage
        path = self.patch_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        every = self.config.checkpoint_bytes
        with storage.open_update(path, job.fetched, truncate=True) as w:
            since = 0

            def write(chunk: bytes) -> None:
                nonlocal since
                w.write(chunk)
                since += len(chunk)

            def progress(total: int) -> None:
                nonlocal since, job
                if since >= every and total < target.length:
                    w.sync()
                    since = 0
                    job = replace(job, fetched=total)
                    self.record(DeltaProgress(job))
                    if self.cancelled():
                        raise DownloadCancelled("the server cancelled the deployment")

            try:
                download_into(
                    self.repo_client,
                    url,
                    length=target.length,
                    offset=job.fetched,
                    write=write,
                    on_progress=progress,
                    write_size=min(WRITE_CHUNK, every),
                )
            finally:
                w.sync()
                job = replace(job, fetched=min(w.tell(), target.length))
                self.record(DeltaProgress(job))
        return job

    def apply_patch(self, job: DeltaJob) -> None:
        """Rebuild the image into the target slot from the verified patch, resuming at the
        journaled segment; DOWNLOADED when the rebuilt image has the signed sha256."""
        j = self.journal
        slot = j.target_slot
        assert slot is not None
        full = self.target()
        sha, _length = self.slot_content(full)
        delta = job_target(job)
        try:  # the patch as it is on the medium now, before the decoder sees a byte of it
            with open(self.patch_path(), "rb") as fh:
                delta.verify_length_and_hashes(fh)
        except (OSError, LengthOrHashMismatchError) as exc:
            self.delta_fallback(Failure.TAMPERED, f"not the maker-signed patch: {exc}")
            return
        try:
            meta = parse_delta_target(delta)
            self.rebuild(job, slot, sha, meta)
        except DownloadCancelled as exc:
            self.cancel(f"delta apply stopped: {exc}")
            return
        except DeltaTargetMismatchError as exc:
            self.delta_fallback(Failure.HASH, str(exc))
            return
        except DeltaError as exc:
            self.delta_fallback(Failure.DECODE, str(exc))
            return
        except (OSError, InstallError) as exc:
            self.delta_fallback(Failure.STORAGE, str(exc))
            return
        reports = ((UpdateEvent.DOWNLOADED, {"bytes": delta.length, "delta": delta.path}),)
        self.transition(Event.DOWNLOADED, reports=reports)
        self.remove_patch()

    def rebuild(self, job: DeltaJob, slot: str, sha256: str, meta: DeltaTarget) -> None:
        resume = Checkpoint(job.segment, job.offset) if job.segment > 0 else None
        with (
            self.slots.open_read(job.source_slot) as source,
            open(self.patch_path(), "rb") as patch,
            self.slots.open_write(slot, job.offset if resume else 0) as w,
            self.slots.open_read(slot) as written,
        ):
            decoder = DeltaDecoder(
                cast(BinaryIO, SlotPrefix(source, job.source_length)),
                patch,
                expected_target_sha256=sha256,
                expected_source_sha256=meta.source_sha256,
            )

            def checkpoint(cp: Checkpoint) -> None:
                nonlocal job
                w.sync()
                job = replace(job, phase=Phase.APPLY, segment=cp.segment, offset=cp.output_offset)
                self.record(DeltaProgress(job))
                if self.cancelled():
                    raise DownloadCancelled("the server cancelled the deployment")

            decoder.apply(w.write, resume=resume, written=written, on_checkpoint=checkpoint)

    # -- endings ----------------------------------------------------------------------------
    def delta_fallback(self, failure: Failure, detail: str) -> None:
        """Give the delta up for the full image (journaled and reported in one write)."""
        reason = fallback_reason(failure, detail)
        log.warning("falling back to the full image: %s", reason)
        full = self.target()
        detail_ = {"target": full.path, "to_version": self.journal.new_version}
        self.stream.forget()
        self.transition(
            Event.DELTA_FALLBACK,
            DeltaFallback(reason),
            reports=((UpdateEvent.DOWNLOADING, {**detail_, "delta_fallback": reason}),),
        )
        self.remove_patch()

    def cancel(self, reason: str) -> None:
        self.transition(Event.CANCEL, SetReason(reason))
        self.remove_patch()

    def remove_patch(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.patch_path().unlink()

"""Whether the device rebuilds an assigned image from a delta, and what a failure means: pure.

A director assignment may offer a delta target next to the full image. The device uses it only
when the delta's *maker-signed* custom metadata binds it to exactly this update: the assigned
full image (path, decompressed sha256 and length) as its result, and the image the active slot
holds as its source. Anything else, and any failure later (the patch's bytes do not match the
signed hash, the decoder refuses the patch, the rebuilt slot has the wrong hash), falls back to
the full image, once: the fallback clears the delta from the journal, so nothing can bring it
back within the same update.

Plain values in, verdicts out: the agent does the fetching, hashing and journaling
(``agent/delta_steps.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from otaguard.errors import DeltaError

DELTA_FORMAT = "otaguard-delta/1"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class DeltaMeta:
    """What the maker signed about a delta target (its ``custom["delta"]``)."""

    source_sha256: str
    source_length: int
    target_path: str
    target_sha256: str
    target_length: int


def _sha256_hex(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX:
        raise DeltaError(f"delta metadata: {what} is not a lowercase hex sha256")
    return value


def _length(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DeltaError(f"delta metadata: {what} is not a length")
    return value


def parse_delta_custom(custom: Any) -> DeltaMeta:
    """The delta fields of a delta target's signed ``custom``.

    Raises:
        DeltaError: not a delta target, another format, or a field of the wrong shape.
    """
    delta = custom.get("delta") if isinstance(custom, dict) else None
    if not isinstance(delta, dict):
        raise DeltaError("delta metadata: the target has no custom 'delta' description")
    if delta.get("format") != DELTA_FORMAT:
        raise DeltaError(f"delta metadata: format {delta.get('format')!r} is not {DELTA_FORMAT}")
    target_path = delta.get("target_path")
    if not isinstance(target_path, str) or not target_path:
        raise DeltaError("delta metadata: target_path missing")
    return DeltaMeta(
        source_sha256=_sha256_hex(delta.get("source_sha256"), "source_sha256"),
        source_length=_length(delta.get("source_length"), "source_length"),
        target_path=target_path,
        target_sha256=_sha256_hex(delta.get("target_sha256"), "target_sha256"),
        target_length=_length(delta.get("target_length"), "target_length"),
    )


@dataclass(frozen=True)
class SlotImage:
    """The image a slot holds as far as the agent knows: its sha256 and length."""

    sha256: str
    length: int


def target_mismatch(meta: DeltaMeta, *, assigned_path: str, image: SlotImage) -> str | None:
    """Why the delta does not rebuild the assigned image (None: it does). ``image`` is the
    maker-signed sha256 and length of what the slot must hold (decompressed)."""
    if meta.target_path != assigned_path:
        return f"the delta rebuilds {meta.target_path}, not the assigned {assigned_path}"
    if meta.target_sha256 != image.sha256:
        return "the delta's target sha256 differs from the assigned image's"
    if meta.target_length != image.length:
        return "the delta's target length differs from the assigned image's"
    return None


class Source(StrEnum):
    MATCH = "match"  # the active slot holds the delta's source
    MISMATCH = "mismatch"  # it holds something else: full image
    UNKNOWN = "unknown"  # the agent does not know: hash the active slot's prefix once


def source_verdict(meta: DeltaMeta, known: SlotImage | None) -> Source:
    """Compare the delta's source with what the agent knows the active slot holds."""
    if known is None:
        return Source.UNKNOWN
    if known.length != meta.source_length:
        return Source.MISMATCH
    return Source.MATCH if known.sha256 == meta.source_sha256 else Source.MISMATCH


def source_mismatch_reason(meta: DeltaMeta, known: SlotImage | None) -> str | None:
    """The fallback reason for ``source_verdict`` once the hash is known (None: a match)."""
    verdict = source_verdict(meta, known)
    if verdict is Source.MATCH:
        return None
    if known is None:
        return "the active slot's image is unknown"
    return (
        f"the active slot holds another image than the delta's source "
        f"({known.sha256[:16]}.../{known.length}, the delta needs "
        f"{meta.source_sha256[:16]}.../{meta.source_length})"
    )


class Phase(StrEnum):
    FETCH = "fetch"  # the patch streams into the agent's state directory
    APPLY = "apply"  # the verified patch rebuilds the image into the inactive slot


class Failure(StrEnum):
    """Where a delta install failed; each falls back to the full image (its reason names it)."""

    UNAVAILABLE = "unavailable"  # the delta file cannot be fetched (permanent error, budget)
    TAMPERED = "tampered"  # its bytes do not match the maker-signed length and sha256
    DECODE = "decode"  # the decoder refused the patch, or the source read short
    STORAGE = "storage"  # the patch or the slot could not be written or read
    HASH = "hash"  # the rebuilt slot does not have the signed full-image sha256


_FAILURE_TEXT = {
    Failure.UNAVAILABLE: "delta unavailable",
    Failure.TAMPERED: "delta refused before decoding",
    Failure.DECODE: "delta does not apply",
    Failure.STORAGE: "delta apply failed on the device's storage",
    Failure.HASH: "the image rebuilt from the delta failed verification",
}


def fallback_reason(failure: Failure, detail: str) -> str:
    """The reason journaled and reported with the fallback to the full image."""
    return f"{_FAILURE_TEXT[failure]}: {detail}"


def on_failure(delta_in_progress: bool) -> bool:
    """Whether a failure falls back to the full image (True) or ends the update (False): only
    while a delta is in progress; the full image after a fallback fails as any update does."""
    return delta_in_progress

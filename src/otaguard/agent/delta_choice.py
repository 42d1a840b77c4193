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

from collections.abc import Sequence
from enum import StrEnum

from tuf.api.metadata import TargetFile

from otaguard.repo.delta_targets import (
    SOURCE_PREFIX_HEX,
    SUFFIX,
    DeltaTarget,
    check_fits,
    parse_delta_target,
)


def check_offer(delta: TargetFile, full: TargetFile) -> DeltaTarget:
    """The delta's signed description, if it is a well-formed delta target that rebuilds
    exactly the assigned full image ``full`` (path, decompressed sha256 and length).

    Raises:
        DeltaMetadataError: (a ``DeltaError``) it does not; the device uses the full image.
    """
    meta = parse_delta_target(delta)
    check_fits(meta, full)
    return meta


class Source(StrEnum):
    MATCH = "match"  # the active slot holds the delta's source
    MISMATCH = "mismatch"  # it holds something else: full image
    UNKNOWN = "unknown"  # the agent does not know: hash the active slot's prefix once


def source_verdict(meta: DeltaTarget, known_sha256: str | None) -> Source:
    """Compare the delta's source with the image the agent knows the active slot holds (its
    sha256: the hash binds the length too)."""
    if known_sha256 is None:
        return Source.UNKNOWN
    return Source.MATCH if known_sha256 == meta.source_sha256 else Source.MISMATCH


def source_mismatch_reason(meta: DeltaTarget, known_sha256: str | None) -> str | None:
    """Why the delta's source is not the active image (None: it is)."""
    verdict = source_verdict(meta, known_sha256)
    if verdict is Source.MATCH:
        return None
    if known_sha256 is None:
        return "the active slot does not hold the delta's source image"
    return (
        f"the active slot holds image {known_sha256[:16]}..., the delta needs "
        f"{meta.source_sha256[:16]}..."
    )


def delta_order(paths: Sequence[str], known_sha256: str | None) -> list[str]:
    """Offered deltas in the order to try them: those whose path names the known active
    image's hash prefix first (``<image>.from-<16 hex>.otadelta``), the rest after (their
    signed metadata decides; an unknown image is hashed for them)."""
    tag = f".from-{known_sha256[:SOURCE_PREFIX_HEX]}{SUFFIX}" if known_sha256 else None
    return sorted(paths, key=lambda p: 0 if tag is not None and p.endswith(tag) else 1)


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

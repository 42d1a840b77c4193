"""What a patch binds together, in the shape the signed release metadata will carry.

``DeltaInfo`` is read from a patch's header (decoder) or returned by the encoder; its
``custom()`` is the dict a maker puts in the delta's TUF target ``custom`` field, so a device
knows from *signed* data which source image the patch needs and which full image it rebuilds
before it feeds a byte of the patch to the decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from otaguard.delta.container import FORMAT_VERSION, Algorithm


@dataclass(frozen=True)
class DeltaInfo:
    algorithm: Algorithm
    source_size: int
    source_sha256: str  # hex
    target_size: int
    target_sha256: str  # hex
    segments: int
    patch_size: int
    format_version: int = FORMAT_VERSION
    matcher: str | None = None  # which matcher the encoder kept (not in the patch; None when read)

    @property
    def needs_source(self) -> bool:
        return self.algorithm == Algorithm.DELTA

    def custom(self) -> dict[str, object]:
        """Fields for the delta target's signed custom metadata."""
        return {
            "delta": {
                "format": self.format_version,
                "algorithm": self.algorithm.name.lower(),
                "source": {"length": self.source_size, "sha256": self.source_sha256},
                "target": {"length": self.target_size, "sha256": self.target_sha256},
            }
        }


@dataclass(frozen=True)
class Checkpoint:
    """Where an interrupted apply can start again: the start of segment ``segment``, which is
    output byte ``output_offset``. Every output byte before it was handed to the writer."""

    segment: int
    output_offset: int

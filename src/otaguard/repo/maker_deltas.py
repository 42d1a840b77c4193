"""Building a release's delta targets on the maker's workstation, from earlier releases of the
same hardware kept in the maker's local repository (``staged/<target name>``).

Why here: the maker is where images are signed, so a delta is signed like any target (offline
keys, delegations) and bound in its custom metadata (``delta_targets.py``) to the exact source
image and the full image it rebuilds. Compressed releases are diffed decompressed (the slot
holds the decompressed image; the patch format compresses its own streams). A delta that does
not pay -- the encoder fell back to a full image, or the patch is not smaller than the
release's own artifact -- is not published: devices simply take the full image.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import TargetFile

from otaguard.delta import encode
from otaguard.errors import RepositoryError
from otaguard.repo.compression import Decompressor, compression_of
from otaguard.repo.delta_targets import full_image_of, is_delta_target, make_delta_target
from otaguard.repo.images import ReleaseInfo, sha256_of
from otaguard.repo.maker import MakerRepository

CHUNK = 1 << 20


@dataclass(frozen=True)
class DeltaOutcome:
    """What happened to one requested delta: ``target`` added (in ``role``), or skipped."""

    source: str  # the earlier release's target name
    target: TargetFile | None
    role: str | None
    message: str


def file_sha256(path: Path) -> tuple[str, int]:
    digest, length = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            length += len(chunk)
    return digest.hexdigest(), length


def earlier_releases(repo: MakerRepository, full: TargetFile, version: str) -> list[TargetFile]:
    """The full-image targets of release ``version`` sharing a hardware type with ``full``.

    Raises:
        RepositoryError: there is none.
    """
    hardware = set(ReleaseInfo.of_target(full).hardware)
    found = []
    for name, target in sorted(repo.all_targets().items()):
        if is_delta_target(target) or name == full.path:
            continue
        info = ReleaseInfo.of_target(target)
        if info.version == version and hardware & set(info.hardware):
            found.append(target)
    if not found:
        raise RepositoryError(f"no release {version} for {sorted(hardware)} in this repository")
    return found


@contextmanager
def image_file(repo: MakerRepository, target: TargetFile, workdir: Path) -> Iterator[Path]:
    """The image ``target`` installs, as a file: its staged artifact (checked against the
    signed hash), decompressed into ``workdir`` when it is compressed."""
    staged = repo.staged_dir / target.path
    if not staged.is_file():
        raise RepositoryError(f"the image of {target.path} is not in this repository (staged/)")
    if file_sha256(staged) != (sha256_of(target), target.length):
        raise RepositoryError(f"staged/{target.path} does not match its signed sha256")
    info = ReleaseInfo.of_target(target)
    kind = info.compression or compression_of(target.path)
    if kind is None:
        yield staged
        return
    want_sha, want_len = full_image_of(target)
    out = workdir / hashlib.sha256(target.path.encode()).hexdigest()
    digest = hashlib.sha256()
    with out.open("wb") as dst, staged.open("rb") as src:

        def sink(data: bytes) -> None:
            digest.update(data)
            dst.write(data)

        dec = Decompressor(kind, sink, want_len)
        while chunk := src.read(CHUNK):
            dec.feed(chunk)
        dec.finish()
    if (digest.hexdigest(), out.stat().st_size) != (want_sha, want_len):
        raise RepositoryError(f"{target.path} does not decompress to its signed image")
    yield out


def build_delta(
    repo: MakerRepository, full: TargetFile, source: TargetFile, workdir: Path
) -> DeltaOutcome:
    """Encode the delta from ``source``'s image to ``full``'s; stage and add it as a target
    of ``full``'s role when it pays (else a skipped outcome, nothing changed)."""
    patch = workdir / "patch.otadelta"
    with image_file(repo, source, workdir) as old, image_file(repo, full, workdir) as new:
        info = encode(old, new, patch)
    if not info.needs_source:
        return DeltaOutcome(
            source.path, None, None, f"skipped delta from {source.path}: it does not pay"
        )
    patch_sha, patch_len = file_sha256(patch)
    if patch_len >= full.length:
        return DeltaOutcome(
            source.path,
            None,
            None,
            f"skipped delta from {source.path}: {patch_len} bytes is not smaller than the "
            f"{full.length}-byte release artifact",
        )
    target = make_delta_target(
        full,
        source_sha256=info.source_sha256,
        source_length=info.source_size,
        patch_sha256=patch_sha,
        patch_length=patch_len,
    )
    role = repo.add_delta_target(patch, target)
    return DeltaOutcome(
        source.path,
        target,
        role,
        f"added {target.path} ({patch_len} bytes, {patch_len / full.length:.1%} of the "
        f"{full.length}-byte artifact) to {role}",
    )


def add_deltas(repo: MakerRepository, full_name: str, versions: list[str]) -> list[DeltaOutcome]:
    """Build the deltas to target ``full_name`` from each earlier release in ``versions``.

    Raises:
        RepositoryError: an unknown target or version, an image missing from ``staged/``
            or not matching its signed hash.
        DeltaError: the encoder failed.
    """
    full = repo.all_targets().get(full_name)
    if full is None or is_delta_target(full):
        raise RepositoryError(f"no full-image target {full_name} in this repository")
    sources = [s for v in versions for s in earlier_releases(repo, full, v)]
    outcomes = []
    for source in sources:
        workdir = Path(tempfile.mkdtemp(prefix="otaguard-delta-"))
        try:
            outcomes.append(build_delta(repo, full, source, workdir))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return outcomes

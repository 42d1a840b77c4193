"""The shape of a delta target: a maker-signed TUF target holding a patch (``otaguard.delta``)
that rebuilds one full-image target from one exact source image.

One module so the maker (who builds and signs it), the server (which checks a publication and
offers a delta to a device) and the device agent (which decides whether to feed the patch to
the decoder) read the same fields the same way. Pure: no I/O, no network.

A delta target sits in the same targets role as the full image it rebuilds, at
``<full image target path>.from-<first 16 hex of the source image sha256>.otadelta``; its TUF
``length``/``hashes`` are those of the patch file, and its ``custom`` is exactly::

    {"delta": {"format": "otaguard-delta/1",
               "source_sha256": <hex sha256 of the source slot image, as installed>,
               "source_length": <int>,
               "target_path": <full image target path>,
               "target_sha256": <hex sha256 of the decompressed full image rebuilt>,
               "target_length": <int>}}

Anything else (an unknown key, a wrong type, a path that does not match the fields) is refused
with ``DeltaMetadataError``: a ``DeltaError`` for the device (fall back to the full image) and
a ``RepositoryError`` for the maker and the server (refuse the publication).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tuf.api.metadata import TargetFile

from otaguard.errors import DeltaMetadataError, RepositoryError
from otaguard.repo.images import ReleaseInfo, check_target_name

FORMAT = "otaguard-delta/1"
FIELD = "delta"
SUFFIX = ".otadelta"
SOURCE_PREFIX_HEX = 16
#: no image (source or rebuilt) may claim more than this (1 TiB): a bound for hostile input
MAX_IMAGE_LENGTH = 1 << 40
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEYS = frozenset(
    {"format", "source_sha256", "source_length", "target_path", "target_sha256", "target_length"}
)


def _check_sha256(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise DeltaMetadataError(f"delta {name} must be 64 lower-case hex characters")
    return value


def _check_length(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DeltaMetadataError(f"delta {name} must be an integer")
    if not 0 < value <= MAX_IMAGE_LENGTH:
        raise DeltaMetadataError(f"delta {name} must be between 1 and {MAX_IMAGE_LENGTH}")
    return value


def _check_full_path(value: Any) -> str:
    if not isinstance(value, str):
        raise DeltaMetadataError("delta target_path must be a string")
    if value.endswith(SUFFIX):
        raise DeltaMetadataError("delta target_path names a delta, not a full image")
    try:
        return check_target_name(value)
    except RepositoryError as exc:
        raise DeltaMetadataError(f"delta target_path: {exc}") from exc


def delta_path_prefix(target_path: str) -> str:
    """What every delta path of full image ``target_path`` starts with (before the source)."""
    return f"{_check_full_path(target_path)}.from-"


def delta_path(target_path: str, source_sha256: str) -> str:
    """The target path of the delta rebuilding ``target_path`` from image ``source_sha256``."""
    _check_full_path(target_path)
    _check_sha256("source_sha256", source_sha256)
    path = f"{target_path}.from-{source_sha256[:SOURCE_PREFIX_HEX]}{SUFFIX}"
    try:
        return check_target_name(path)
    except RepositoryError as exc:
        raise DeltaMetadataError(f"delta path too long for {target_path!r}: {exc}") from exc


@dataclass(frozen=True)
class DeltaTarget:
    """What a delta target's signed custom metadata binds: the exact source image it needs
    and the full-image target (path, decompressed sha256 and length) it rebuilds."""

    source_sha256: str
    source_length: int
    target_path: str
    target_sha256: str
    target_length: int

    def __post_init__(self) -> None:
        _check_sha256("source_sha256", self.source_sha256)
        _check_length("source_length", self.source_length)
        _check_full_path(self.target_path)
        _check_sha256("target_sha256", self.target_sha256)
        _check_length("target_length", self.target_length)
        if self.source_sha256 == self.target_sha256:
            raise DeltaMetadataError("a delta from an image to itself is pointless")

    @property
    def path(self) -> str:
        """This delta's own target path."""
        return delta_path(self.target_path, self.source_sha256)

    def to_custom(self) -> dict[str, Any]:
        return {
            FIELD: {
                "format": FORMAT,
                "source_sha256": self.source_sha256,
                "source_length": self.source_length,
                "target_path": self.target_path,
                "target_sha256": self.target_sha256,
                "target_length": self.target_length,
            }
        }

    @classmethod
    def from_custom(cls, custom: Any) -> DeltaTarget:
        """Parse a delta target's ``custom`` (strictly: no missing, extra or mistyped key).

        Raises:
            DeltaMetadataError: the shape is not the one above.
        """
        if not isinstance(custom, dict) or set(custom) != {FIELD}:
            raise DeltaMetadataError('delta target custom must be exactly {"delta": {...}}')
        fields = custom[FIELD]
        if not isinstance(fields, dict):
            raise DeltaMetadataError("delta custom field must be an object")
        if set(fields) != _KEYS:
            missing = sorted(_KEYS - set(fields))
            extra = sorted(str(k) for k in set(fields) - _KEYS)
            raise DeltaMetadataError(f"delta custom fields: missing {missing}, unknown {extra}")
        if fields["format"] != FORMAT:
            raise DeltaMetadataError(f"delta format must be {FORMAT!r}")
        return cls(
            source_sha256=fields["source_sha256"],
            source_length=fields["source_length"],
            target_path=fields["target_path"],
            target_sha256=fields["target_sha256"],
            target_length=fields["target_length"],
        )


def is_delta_target(target: TargetFile) -> bool:
    """Whether ``target`` claims to be a delta (by its path or its custom field). A claim is
    not validity: ``parse_delta_target`` decides that."""
    custom = target.custom if isinstance(target.custom, dict) else {}
    return target.path.endswith(SUFFIX) or FIELD in custom


def parse_delta_target(target: TargetFile) -> DeltaTarget:
    """The delta ``target`` describes, after checking its custom metadata and that its path is
    the one those fields give, and that TUF gives it a sha256 and a non-zero length.

    Raises:
        DeltaMetadataError: anything does not fit.
    """
    delta = DeltaTarget.from_custom(target.custom)
    if target.path != delta.path:
        raise DeltaMetadataError(f"delta target path {target.path!r} should be {delta.path!r}")
    if "sha256" not in target.hashes or target.length <= 0:
        raise DeltaMetadataError(f"delta target {target.path} needs a sha256 and a length")
    return delta


def full_image_of(full: TargetFile) -> tuple[str, int]:
    """The (sha256, length) of the image a full-image target installs: the decompressed
    image for a compressed artifact, the artifact itself otherwise.

    Raises:
        RepositoryError: ``full`` has no valid release information.
    """
    info = ReleaseInfo.of_target(full)
    if info.compression is not None and info.image_sha256 and info.image_length is not None:
        return info.image_sha256, info.image_length
    if "sha256" not in full.hashes:
        raise RepositoryError(f"target {full.path} has no sha256 hash")
    return str(full.hashes["sha256"]), full.length


def check_fits(delta: DeltaTarget, full: TargetFile) -> None:
    """``delta`` rebuilds exactly the image of the full-image target ``full``.

    Raises:
        DeltaMetadataError: another path, image sha256 or length.
    """
    if full.path != delta.target_path:
        raise DeltaMetadataError(f"delta rebuilds {delta.target_path}, not {full.path}")
    try:
        sha256, length = full_image_of(full)
    except RepositoryError as exc:
        raise DeltaMetadataError(f"delta's full image {full.path}: {exc}") from exc
    if (sha256, length) != (delta.target_sha256, delta.target_length):
        raise DeltaMetadataError(
            f"delta's target_sha256/target_length do not match the image of {full.path}"
        )


def make_delta_target(
    full: TargetFile,
    *,
    source_sha256: str,
    source_length: int,
    patch_sha256: str,
    patch_length: int,
) -> TargetFile:
    """The delta target (unsigned, to be added to ``full``'s role) for a patch file of
    ``patch_length`` bytes and sha256 ``patch_sha256`` rebuilding ``full`` from the image
    ``source_sha256``.

    Raises:
        DeltaMetadataError: a field is invalid.
    """
    sha256, length = full_image_of(full)
    delta = DeltaTarget(
        source_sha256=source_sha256,
        source_length=source_length,
        target_path=full.path,
        target_sha256=sha256,
        target_length=length,
    )
    _check_sha256("file sha256", patch_sha256)
    _check_length("file length", patch_length)
    return TargetFile(
        patch_length, {"sha256": patch_sha256}, delta.path, {"custom": delta.to_custom()}
    )


def check_role_deltas(targets: Mapping[str, TargetFile]) -> dict[str, DeltaTarget]:
    """Check every delta target of one targets role (``targets``: all the role lists): it is
    well formed, the full image it rebuilds is a target of the *same* role whose image it
    matches, and the patch is smaller than that full target's artifact. Returns the deltas by
    path.

    Raises:
        DeltaMetadataError: the first delta that fails, named.
    """
    found: dict[str, DeltaTarget] = {}
    for name, target in targets.items():
        if not is_delta_target(target):
            continue
        delta = parse_delta_target(target)
        full = targets.get(delta.target_path)
        if full is None:
            raise DeltaMetadataError(
                f"delta {name}: its full image {delta.target_path} is not in the same role"
            )
        check_fits(delta, full)
        if target.length >= full.length:
            raise DeltaMetadataError(
                f"delta {name} ({target.length} bytes) is not smaller than its full image"
                f" ({full.length} bytes)"
            )
        found[name] = delta
    return found


def pick_delta(
    full: TargetFile,
    image_sha256: str | None,
    lookup: Callable[[str], TargetFile | None],
) -> TargetFile | None:
    """The delta target to offer a device whose signed manifest reports ``image_sha256`` in
    its active slot, for the full-image target ``full``: only one made from *exactly* that
    image (the whole sha256, not the path's prefix) that rebuilds exactly ``full``'s image;
    None otherwise (no report, no such delta, or one whose metadata does not fit).
    ``lookup``: the target a TUF client would find for a path (delegations included)."""
    if image_sha256 is None or is_delta_target(full):
        return None
    try:
        candidate = lookup(delta_path(full.path, image_sha256))
        if candidate is None:
            return None
        delta = parse_delta_target(candidate)
        if delta.source_sha256 != image_sha256:
            return None  # same 16-hex prefix, another image
        check_fits(delta, full)
    except RepositoryError:  # DeltaMetadataError included: never offer a misfit
        return None
    return candidate

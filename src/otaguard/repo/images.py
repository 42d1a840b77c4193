"""Release descriptions carried in TUF target ``custom`` metadata.

This is the only place that knows the shape of OTAGuard's custom fields, so the maker side, the
server and the device agree on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tuf.api.metadata import TargetFile

from otaguard.errors import RepositoryError

_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
_TARGET_NAME = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,3}$"
)


@dataclass(frozen=True)
class ReleaseInfo:
    """What a maker says about an image: version, compatible hardware, anti-rollback level."""

    version: str
    hardware: tuple[str, ...]
    security_version: int = 0
    notes: str = ""
    sbom_sha256: str | None = None
    fixes: tuple[str, ...] = field(default_factory=tuple)
    # A compressed artifact (repo/compression.py): how it is compressed, and the sha256 and
    # length of the image it decompresses to (what the slot holds once installed).
    compression: str | None = None
    image_sha256: str | None = None
    image_length: int | None = None

    def __post_init__(self) -> None:
        if not self.version or len(self.version) > 64:
            raise RepositoryError("release version must be 1..64 characters")
        if not self.hardware or any(not h or len(h) > 64 for h in self.hardware):
            raise RepositoryError("at least one hardware type (1..64 characters) is required")
        if self.security_version < 0:
            raise RepositoryError("security version must be >= 0")
        bad = [c for c in self.fixes if not _CVE.match(c)]
        if bad:
            raise RepositoryError(f"not CVE identifiers: {', '.join(bad)}")
        if self.compression is not None and (
            self.compression not in ("zstd", "xz", "gzip")
            or not self.image_sha256
            or self.image_length is None
            or self.image_length < 0
        ):
            raise RepositoryError(
                "a compressed release names zstd, xz or gzip and its image sha256 and length"
            )

    def to_custom(self) -> dict[str, Any]:
        custom: dict[str, Any] = {
            "version": self.version,
            "hardware": list(self.hardware),
            "security_version": self.security_version,
        }
        if self.notes:
            custom["notes"] = self.notes
        if self.sbom_sha256:
            custom["sbom_sha256"] = self.sbom_sha256
        if self.fixes:
            custom["fixes"] = list(self.fixes)
        if self.compression:
            custom["compression"] = self.compression
            custom["image_sha256"] = self.image_sha256
            custom["image_length"] = self.image_length
        return custom

    @classmethod
    def from_custom(cls, custom: Any) -> ReleaseInfo:
        if not isinstance(custom, dict):
            raise RepositoryError("target has no OTAGuard custom metadata")
        try:
            return cls(
                version=str(custom["version"]),
                hardware=tuple(str(h) for h in custom["hardware"]),
                security_version=int(custom.get("security_version", 0)),
                notes=str(custom.get("notes", "")),
                sbom_sha256=custom.get("sbom_sha256"),
                fixes=tuple(custom.get("fixes", ())),
                compression=custom.get("compression"),
                image_sha256=custom.get("image_sha256"),
                image_length=custom.get("image_length"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RepositoryError(f"malformed OTAGuard custom metadata: {exc}") from exc

    @classmethod
    def of_target(cls, target: TargetFile) -> ReleaseInfo:
        return cls.from_custom(target.custom)


def check_target_name(name: str) -> str:
    if not _TARGET_NAME.match(name) or ".." in name:
        raise RepositoryError(
            f"invalid target name {name!r}: use letters, digits, '.', '_', '-' and up to 3 '/'"
        )
    return name


def sha256_of(target: TargetFile) -> str:
    try:
        return str(target.hashes["sha256"])
    except KeyError as exc:
        raise RepositoryError(f"target {target.path} has no sha256 hash") from exc

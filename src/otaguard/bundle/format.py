"""The offline update bundle: one uncompressed POSIX tar archive (stdlib ``tarfile``).

Layout (member names; every member a regular file, each name once)::

    otaguard-bundle.json            manifest, first member: {"format": 1, "target": NAME,
                                    "created": ISO time, "source": URL, "files": {member: sha256},
                                    "deltas": [delta target names] (only when there are some)}
    metadata/1.root.json ...        the signed root chain (every version from 1), then the
    metadata/timestamp.json         metadata a TUF client fetches for NAME, under the names it
    metadata/N.snapshot.json        fetches them by (consistent snapshots): timestamp, snapshot,
    metadata/N.targets.json         top-level targets and each delegated targets role on the
    metadata/N.<role>.json          way to NAME
    targets/<dir>/<sha256>.<file>   the image, under its hash-prefixed TUF target path, and
                                    any delta targets of it (``repo/delta_targets.py``)

A bundle is a static TUF mirror of exactly what one device needs for one target. Nothing in it
is trusted: the device verifies it all from its own trusted root, as online. The manifest's
hashes only make a damaged copy (a bad USB stick) fail early with a clear message. The archive is
not compressed so that members can be read with seeks, in chunks, in bounded memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from otaguard.errors import BundleError

MANIFEST = "otaguard-bundle.json"
FORMAT = 1
MAX_MANIFEST = 1 << 20
CHUNK = 1 << 20


@dataclass(frozen=True)
class Manifest:
    target: str
    created: str
    source: str
    files: dict[str, str]
    #: delta targets of ``target`` the bundle carries too (a device may use one instead)
    deltas: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "format": FORMAT,
            "target": self.target,
            "created": self.created,
            "source": self.source,
            "files": self.files,
        }
        if self.deltas:
            data["deltas"] = list(self.deltas)
        return json.dumps(data, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data: Any = json.loads(raw)
            if data.get("format") != FORMAT:
                raise BundleError(f"unsupported bundle format {data.get('format')!r}")
            files = data["files"]
            if not isinstance(files, dict):
                raise TypeError("files is not an object")
            deltas = data.get("deltas", [])
            if not isinstance(deltas, list) or not all(isinstance(d, str) for d in deltas):
                raise TypeError("deltas is not a list of target names")
            return cls(
                target=str(data["target"]),
                created=str(data.get("created", "")),
                source=str(data.get("source", "")),
                files={str(k): str(v) for k, v in files.items()},
                deltas=tuple(deltas),
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            # RecursionError: JSON nested deeper than the interpreter's recursion limit.
            raise BundleError(f"bundle manifest is malformed: {exc}") from exc


def _sha256_of(fh: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


class BundleReader:
    """Read-only access to a bundle's members by name, never extracting anything to disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, "r:")  # noqa: SIM115 - closed by close()
        except (OSError, tarfile.TarError) as exc:
            raise BundleError(f"{path} is not a readable bundle (uncompressed tar): {exc}") from exc
        try:
            self._members = self._index()
            self.manifest = Manifest.from_json(self._read_small(MANIFEST, MAX_MANIFEST))
            unknown = set(self._members) - set(self.manifest.files) - {MANIFEST}
            missing = set(self.manifest.files) - set(self._members)
            if unknown or missing:
                raise BundleError(
                    f"bundle members and manifest disagree (unlisted {sorted(unknown)[:3]}, "
                    f"missing {sorted(missing)[:3]})"
                )
        except BaseException:
            self._tar.close()
            raise

    def _index(self) -> dict[str, tarfile.TarInfo]:
        try:
            infos = self._tar.getmembers()
        except tarfile.TarError as exc:  # a damaged header after the first member
            raise BundleError(f"{self.path} is not a readable bundle: {exc}") from exc
        end = self.path.stat().st_size
        members: dict[str, tarfile.TarInfo] = {}
        for info in infos:
            if not info.isreg() or info.issparse():
                raise BundleError(f"bundle member {info.name!r} is not a regular file")
            if info.offset_data + info.size > end:  # reads would fail half way
                raise BundleError(f"bundle member {info.name!r} is cut short")
            if info.name in members:
                raise BundleError(f"bundle member {info.name!r} appears twice")
            members[info.name] = info
        if MANIFEST not in members:
            raise BundleError(f"{self.path} has no {MANIFEST}: not an OTAGuard bundle")
        return members

    def _read_small(self, name: str, limit: int) -> bytes:
        info = self._members[name]
        if info.size > limit:
            raise BundleError(f"bundle member {name} is too large ({info.size} bytes)")
        with self.open(name) as fh:
            return fh.read()

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def target(self) -> str:
        return self.manifest.target

    def names(self) -> list[str]:
        return sorted(self._members)

    def size(self, name: str) -> int | None:
        info = self._members.get(name)
        return None if info is None else info.size

    def open(self, name: str) -> IO[bytes]:
        """A seekable read-only file of member ``name`` (``KeyError`` if absent)."""
        fh = self._tar.extractfile(self._members[name])
        if fh is None:  # pragma: no cover - regular files always have a file object
            raise BundleError(f"bundle member {name} has no data")
        return fh

    def check_integrity(self, max_size: int | None = None) -> None:
        """Members (up to ``max_size`` bytes each) match the manifest's sha256: catches a
        damaged copy early. Not a security check (the manifest is unsigned); the device
        verifies the image itself against the signed hash while it streams it."""
        for name, digest in sorted(self.manifest.files.items()):
            if max_size is not None and self._members[name].size > max_size:
                continue
            with self.open(name) as fh:
                if _sha256_of(fh) != digest:
                    raise BundleError(f"bundle member {name} is damaged (sha256 mismatch)")


def write_bundle(
    out: Path,
    manifest_target: str,
    source: str,
    created: str,
    files: dict[str, Path | bytes],
    *,
    deltas: tuple[str, ...] = (),
) -> Manifest:
    """Write a bundle atomically (temp file, fsync, rename): manifest first, then ``files``."""
    digests: dict[str, str] = {}
    for name, content in files.items():
        if isinstance(content, bytes):
            digests[name] = hashlib.sha256(content).hexdigest()
        else:
            with open(content, "rb") as fh:
                digests[name] = _sha256_of(fh)
    manifest = Manifest(
        target=manifest_target, created=created, source=source, files=digests, deltas=deltas
    )
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with open(tmp, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:", format=tarfile.PAX_FORMAT) as tar:
                _add(tar, MANIFEST, manifest.to_json())
                for name, content in files.items():
                    _add(tar, name, content)
            raw.flush()
            os.fsync(raw.fileno())
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


def _add(tar: tarfile.TarFile, name: str, content: Path | bytes) -> None:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    if isinstance(content, bytes):
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    else:
        info.size = content.stat().st_size
        with open(content, "rb") as fh:
            tar.addfile(info, fh)


def iter_chunks(fh: IO[bytes], start: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    fh.seek(start)
    while data := fh.read(chunk):
        yield data

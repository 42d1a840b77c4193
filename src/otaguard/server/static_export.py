"""Write the TUF repository as plain files, for any static file server or CDN.

Layout (the paths the server itself serves): ``DIR/tuf/metadata/<name>`` for every published
metadata file, ``DIR/tuf/targets/<dir>/<sha256>.<name>`` for every published target
(consistent snapshots: a target file's name carries its hash, so it never changes). Devices
verify everything they fetch, so the mirror needs no trust; the director (check-ins, reports)
stays on the server.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from otaguard.errors import StoreError
from otaguard.store.blobs import BlobStore
from otaguard.store.database import SqlMetadataStore, Store


@dataclass(frozen=True)
class ExportResult:
    metadata: int
    targets: int
    skipped: int  # target files already present with the right size


def target_file_path(target_name: str, sha256: str) -> PurePosixPath:
    """``dir/name`` -> ``dir/<sha256>.name`` (TUF's consistent-snapshot target path)."""
    path = PurePosixPath(target_name)
    if path.is_absolute() or any(part in ("", ".", "..") for part in target_name.split("/")):
        raise StoreError(f"target name {target_name!r} is not a safe relative path")
    return path.with_name(f"{sha256}.{path.name}")


def _write_atomic(dest: Path, chunks: Iterable[bytes]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def export_static(store: Store, blobs: BlobStore, out: Path) -> ExportResult:
    """Write (or bring up to date) the static mirror in ``out``. Targets first, metadata last,
    timestamp.json at the very end, so a client of a mirror being updated never sees metadata
    naming a target file that is not there yet."""
    metadata = SqlMetadataStore(store)
    targets = skipped = 0
    for release in store.list_releases():
        dest = out / "tuf" / "targets" / target_file_path(release.target_name, release.sha256)
        if dest.is_file() and dest.stat().st_size == release.length:
            skipped += 1
            continue
        _write_atomic(dest, blobs.read(release.sha256))
        targets += 1
    names = sorted(metadata.names(), key=lambda n: n == "timestamp.json")
    for name in names:
        if "/" in name or name.startswith("."):
            raise StoreError(f"metadata name {name!r} is not a plain file name")
        data = metadata.get(name)
        if data is not None:
            _write_atomic(out / "tuf" / "metadata" / name, [data])
    return ExportResult(len(names), targets, skipped)

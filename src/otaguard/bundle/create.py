"""Make an offline bundle from a running server (``otaguard bundle create``).

A stock ``tuf.ngclient.Updater``, started from a trusted root, refreshes against the server
exactly as a device would, through a fetcher that keeps a copy of every metadata file it
fetched; the target is then streamed into a temporary file and checked against its signed length
and hashes. The bundle holds the root chain from version 1 (so a device that trusts any older
root can walk it forward) and those files, under the names a TUF client asks for.

With ``delta_from`` (source image sha256s), the maker-signed delta targets from those images to
the target are added too (and the metadata on their way), each checked like the image and
against ``repo/delta_targets.py``: a device running one of those images may apply the delta
instead; the full image stays in the bundle for every other device and as the fallback.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater

from otaguard.bundle.format import Manifest, write_bundle
from otaguard.errors import DeltaMetadataError, DownloadError, VerificationError
from otaguard.net.client import make_client
from otaguard.net.download import download_into
from otaguard.net.fetcher import HttpxFetcher
from otaguard.repo.delta_targets import check_fits, delta_path, parse_delta_target

MAX_ROOTS = 1024


class RecordingFetcher(HttpxFetcher):
    """The agent's fetcher, keeping every completely fetched metadata file by its name."""

    def __init__(self, client: httpx.Client, metadata_base: str) -> None:
        super().__init__(client)
        self.metadata_base = metadata_base
        self.files: dict[str, bytes] = {}

    def _fetch(self, url: str) -> Iterator[bytes]:
        chunks = super()._fetch(url)
        return self._record(url, chunks)

    def _record(self, url: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        data = bytearray()
        for chunk in chunks:
            data += chunk
            yield chunk
        if url.startswith(self.metadata_base):
            self.files[unquote(url[len(self.metadata_base) :])] = bytes(data)


def _root_chain(client: httpx.Client, first: int) -> dict[str, bytes]:
    """``1.root.json`` .. the newest, as served (verified by the Updater's refresh later)."""
    roots: dict[str, bytes] = {}
    for version in range(first, MAX_ROOTS):
        r = client.get(f"/tuf/metadata/{version}.root.json")
        if r.status_code == 404:
            break
        if r.status_code != 200:
            raise DownloadError(f"HTTP {r.status_code} for {version}.root.json")
        roots[f"{version}.root.json"] = r.content
    return roots


def create_bundle(
    server_url: str,
    target: str,
    out: Path,
    *,
    trusted_root: bytes | None = None,
    ca_file: Path | None = None,
    delta_from: tuple[str, ...] = (),
) -> Manifest:
    """Write a bundle for ``target`` from ``server_url`` to ``out``; returns its manifest.

    ``trusted_root`` is where verification starts (the maker's first root, as devices have
    it); without it the server's ``1.root.json`` is used, which is only a convenience: the
    device verifies the chain from its own root anyway.
    """
    base = server_url.rstrip("/")
    metadata_base = f"{base}/tuf/metadata/"
    with make_client(base, ca_file, None) as client, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        roots = _root_chain(client, 1)
        if trusted_root is None:
            if "1.root.json" not in roots:
                raise DownloadError(f"{base} serves no 1.root.json")
            trusted_root = roots["1.root.json"]
        fetcher = RecordingFetcher(client, metadata_base)
        try:
            updater = Updater(
                metadata_dir=str(work),
                metadata_base_url=metadata_base,
                target_base_url=f"{base}/tuf/targets/",
                target_dir=str(work),
                fetcher=fetcher,
                bootstrap=trusted_root,
            )
            updater.refresh()
            info = updater.get_targetinfo(target)
        except tuf_exc.DownloadError as exc:
            raise DownloadError(f"repository metadata unavailable: {exc}") from exc
        except (tuf_exc.RepositoryError, ValueError) as exc:
            raise VerificationError(f"repository metadata rejected: {exc}") from exc
        if info is None:
            raise VerificationError(f"target {target} is not in the signed repository")
        downloads = {info.get_prefixed_paths()[0]: _download(client, info, work / "image")}
        deltas = [_delta_info(updater, info, source) for source in delta_from]
        for n, delta in enumerate(deltas):
            downloads[delta.get_prefixed_paths()[0]] = _download(client, delta, work / f"d{n}")
        files: dict[str, Path | bytes] = {}
        for name, raw in sorted(roots.items(), key=lambda kv: int(kv[0].split(".")[0])):
            files[f"metadata/{name}"] = raw
        for name, raw in fetcher.files.items():
            if not name.endswith(".root.json"):
                files[f"metadata/{name}"] = raw
        for path, local in downloads.items():
            files[f"targets/{path}"] = local
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return write_bundle(out, target, base, created, files, deltas=tuple(d.path for d in deltas))


def _delta_info(updater: Updater, full: TargetFile, source_sha256: str) -> TargetFile:
    """The signed delta target rebuilding ``full`` from image ``source_sha256``, checked."""
    try:
        path = delta_path(full.path, source_sha256)
        info = updater.get_targetinfo(path)
        if info is None:
            raise VerificationError(f"no delta {path} in the signed repository")
        delta = parse_delta_target(info)
        if delta.source_sha256 != source_sha256:
            raise VerificationError(f"delta {path} was made from another image")
        check_fits(delta, full)
    except DeltaMetadataError as exc:
        raise VerificationError(f"delta from {source_sha256[:16]}: {exc}") from exc
    except tuf_exc.DownloadError as exc:
        raise DownloadError(f"repository metadata unavailable: {exc}") from exc
    except (tuf_exc.RepositoryError, ValueError) as exc:
        raise VerificationError(f"repository metadata rejected: {exc}") from exc
    return info


def _download(client: httpx.Client, info: TargetFile, local: Path) -> Path:
    """Stream target ``info`` into ``local``; check its signed length and hashes."""
    with open(local, "wb") as fh:

        def write(chunk: bytes) -> None:
            fh.write(chunk)

        download_into(
            client,
            f"/tuf/targets/{info.get_prefixed_paths()[0]}",
            length=info.length,
            offset=0,
            write=write,
        )
    with open(local, "rb") as check:
        try:
            info.verify_length_and_hashes(check)
        except Exception as exc:  # tuf raises LengthOrHashMismatchError
            raise VerificationError(
                f"served {info.path} does not match its signature: {exc}"
            ) from exc
    return local

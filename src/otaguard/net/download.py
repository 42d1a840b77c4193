"""A resumable, length-capped target download that hands its bytes to a writer.

Shared by the device agent (streaming into a slot) and bundle creation (streaming into a
file): the endless-data defence (never more bytes than the signed length), HTTP Range resume
and the permanent-versus-transient classification of failures live here once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from otaguard.errors import DownloadError

#: slot writes (and hash reads) of at least this size: fewer system calls per image
WRITE_CHUNK = 1 << 20


def _is_permanent(status: int) -> bool:
    return 400 <= status < 500 and status not in (408, 425, 429)


@dataclass
class DownloadProgress:
    written: int  # bytes handed to ``write`` by this request
    resumed_from: int  # the offset this request started at
    received: int  # bytes received on the wire (more than ``written`` if Range was ignored)
    status: int


def _content_range_start(value: str | None) -> int | None:
    """The first byte of a ``Content-Range: bytes a-b/n`` header, or ``None``."""
    if not value or not value.startswith("bytes "):
        return None
    first, _, _ = value[6:].partition("-")
    try:
        return int(first)
    except ValueError:
        return None


def _bytes_to_skip(response: httpx.Response, url: str, *, offset: int, length: int) -> int:
    """Check a response's status and headers before its body is read; return how many
    leading bytes of the body to drop (``offset`` for a ``200`` to a Range request)."""
    status = response.status_code
    if status not in (200, 206):
        raise DownloadError(f"HTTP {status} for {url}", permanent=_is_permanent(status))
    skip = offset if status == 200 else 0
    if status == 206:
        start = _content_range_start(response.headers.get("content-range"))
        if start != offset:
            raise DownloadError(
                f"server answered Range {offset}- with Content-Range "
                f"{response.headers.get('content-range')!r}"
            )
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > length - offset + skip:
        raise DownloadError(
            f"server announces {declared} bytes, more than the signed length of {length} allows",
            permanent=True,
        )
    return skip


def download_into(
    client: httpx.Client,
    url: str,
    *,
    length: int,
    offset: int,
    write: Callable[[bytes], None],
    on_progress: Callable[[int], None] | None = None,
    write_size: int = WRITE_CHUNK,
) -> DownloadProgress:
    """Fetch bytes ``offset..length`` of ``url`` (HTTP Range when resuming) and hand them to
    ``write`` in pieces of ``write_size`` bytes or more. Never accepts more than ``length`` bytes in total
    (endless-data defence).

    A ``206`` must start at ``offset`` (``Content-Range``); a ``200`` to a Range request (a
    server or proxy that ignores Range) is accepted by skipping the first ``offset`` bytes.
    Raises ``DownloadError`` (``permanent`` for 4xx other than 408/425/429, and for more bytes
    than signed) when the transfer fails; what was written so far stays written, so the caller
    resumes from ``offset + written``. ``on_progress`` may raise to stop the transfer.
    """
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    written = 0
    received = 0
    try:
        with client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            if status == 416 and offset >= length:
                return DownloadProgress(0, offset, 0, status)
            skip = _bytes_to_skip(response, url, offset=offset, length=length)
            pending: list[bytes] = []  # joined into writes of at least write_size bytes
            pending_size = 0

            def emit(data: bytes) -> None:
                nonlocal written
                write(data)
                written += len(data)
                if on_progress:
                    on_progress(offset + written)

            try:
                # Pieces as they arrive, handed on in write_size-sized writes; on a dropped
                # connection what arrived is still written, so a resume loses nothing.
                for piece in response.iter_bytes():
                    received += len(piece)
                    if skip:
                        drop = min(skip, len(piece))
                        piece, skip = piece[drop:], skip - drop
                    if offset + written + pending_size + len(piece) > length:
                        raise DownloadError(
                            f"server sent more than the signed length of {length} bytes",
                            permanent=True,
                        )
                    pending.append(piece)
                    pending_size += len(piece)
                    if pending_size >= write_size:
                        emit(b"".join(pending))
                        pending.clear()
                        pending_size = 0
            except httpx.HTTPError:
                if pending:
                    emit(b"".join(pending))
                raise
            if pending:
                emit(b"".join(pending))
    except httpx.HTTPError as exc:
        raise DownloadError(f"transfer of {url} interrupted after {written} bytes: {exc}") from exc
    return DownloadProgress(written, offset, received, status)


def hash_prefix(read: Callable[[int], bytes], length: int) -> Any:
    """A sha256 object fed with the first ``length`` bytes from ``read`` (to resume hashing)."""
    h = hashlib.sha256()
    left = length
    while left > 0:
        chunk = read(min(WRITE_CHUNK, left))
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)
    return h

"""The agent's HTTP side: an authenticated httpx client, a TUF fetcher over it, and a
resumable, length-capped, hashing target download that streams into a slot."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tuf.api import exceptions as tuf_exc
from tuf.ngclient.fetcher import FetcherInterface

from otaguard.errors import DownloadError

CHUNK = 1 << 16
#: slot writes (and hash reads) of at least this size: fewer system calls per image
WRITE_CHUNK = 1 << 20


@dataclass(frozen=True)
class DeviceCredentials:
    device_id: str
    secret: str

    def headers(self) -> dict[str, str]:
        return {"X-OTAGuard-Device": self.device_id, "Authorization": f"Bearer {self.secret}"}


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """Client TLS context that trusts only ``ca_file`` (the pinned server CA), TLS >= 1.2."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def make_client(
    base_url: str,
    ca_file: Path | None,
    credentials: DeviceCredentials | None,
    *,
    timeout: float = 20.0,
    transport: httpx.BaseTransport | None = None,
    client_cert: tuple[Path, Path] | None = None,
) -> httpx.Client:
    """``client_cert`` (certificate, key): presented in the TLS handshake (mTLS identity)."""
    verify: Any = tls_context(ca_file) if ca_file else True
    if client_cert is not None:
        if verify is True:
            verify = ssl.create_default_context()
        verify.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    return httpx.Client(
        base_url=base_url,
        verify=verify,
        headers=credentials.headers() if credentials else {},
        timeout=httpx.Timeout(timeout, connect=10.0),
        transport=transport,
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
    )


def _is_permanent(status: int) -> bool:
    return 400 <= status < 500 and status not in (408, 425, 429)


class HttpxFetcher(FetcherInterface):
    """TUF's fetcher interface over our client (same TLS pinning and credentials)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self.client.send(self.client.build_request("GET", url), stream=True)
        except httpx.HTTPError as exc:
            raise tuf_exc.DownloadError(f"cannot fetch {url}: {exc}") from exc
        if response.status_code != 200:
            response.close()
            raise tuf_exc.DownloadHTTPError(
                f"HTTP {response.status_code} for {url}", response.status_code
            )
        return self._chunks(response)

    @staticmethod
    def _chunks(response: httpx.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_bytes(CHUNK)
        except httpx.HTTPError as exc:
            raise tuf_exc.DownloadError(f"transfer interrupted: {exc}") from exc
        finally:
            response.close()


class DownloadCancelled(DownloadError):
    """The transfer was stopped on purpose (the server cancelled the deployment)."""

    code = "cancelled"

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


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
            if (
                declared is not None
                and declared.isdigit()
                and int(declared) > length - offset + skip
            ):
                raise DownloadError(
                    f"server announces {declared} bytes, more than the signed length of "
                    f"{length} allows",
                    permanent=True,
                )
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

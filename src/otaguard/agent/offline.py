"""Offline updates: the agent installs from a bundle file through its own, unchanged code path.

``BundleTransport`` is an httpx transport that answers the agent's requests from a bundle:
``/tuf/metadata/NAME`` and ``/tuf/targets/PATH`` from the members ``metadata/NAME`` and
``targets/PATH`` (with HTTP Range, streamed in chunks), anything else (check-in, reports) with
``503`` so reports stay queued in the journal until the device is online again. The agent's
TUF fetcher, ``tuf.ngclient.Updater``, target download, streaming hash, read-back, hardware and
anti-rollback checks and boot switch are therefore exactly the online ones; only the director
assignment is skipped (see ``UpdateAgent.install_target`` and docs/DESIGN.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import IO
from urllib.parse import unquote, urlsplit

import httpx

from otaguard.bundle.format import BundleReader

log = logging.getLogger(__name__)

CHUNK = 1 << 18


class _MemberStream(httpx.SyncByteStream):
    def __init__(self, fh: IO[bytes], start: int, length: int) -> None:
        self._fh = fh
        self._start = start
        self._left = length

    def __iter__(self) -> Iterator[bytes]:
        self._fh.seek(self._start)
        while self._left > 0:
            chunk = self._fh.read(min(CHUNK, self._left))
            if not chunk:
                return
            self._left -= len(chunk)
            yield chunk

    def close(self) -> None:
        self._fh.close()


def _range_start(value: str | None) -> int | None:
    if not value or not value.startswith("bytes=") or not value.endswith("-"):
        return None
    try:
        return int(value[6:-1])
    except ValueError:
        return None


class BundleTransport(httpx.BaseTransport):
    """Serve a bundle's members to an httpx client whose base URL is ``server_url``."""

    def __init__(self, bundle: BundleReader, server_url: str) -> None:
        self.bundle = bundle
        self.prefix = urlsplit(server_url).path.rstrip("/") + "/tuf/"
        self.requests: list[str] = []  # member names served (tests, logs)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        if request.method != "GET" or not path.startswith(self.prefix):
            return httpx.Response(503, text="offline: installing from a bundle", request=request)
        name = path[len(self.prefix) :]
        if not name.startswith(("metadata/", "targets/")):
            return httpx.Response(404, request=request)
        size = self.bundle.size(name)
        if size is None:
            return httpx.Response(404, text=f"{name} is not in the bundle", request=request)
        self.requests.append(name)
        start = _range_start(request.headers.get("range"))
        if start is not None and start >= size:
            return httpx.Response(
                416, headers={"content-range": f"bytes */{size}"}, request=request
            )
        fh = self.bundle.open(name)
        if start:
            return httpx.Response(
                206,
                headers={
                    "content-length": str(size - start),
                    "content-range": f"bytes {start}-{size - 1}/{size}",
                },
                stream=_MemberStream(fh, start, size - start),
                request=request,
            )
        return httpx.Response(
            200,
            headers={"content-length": str(size)},
            stream=_MemberStream(fh, 0, size),
            request=request,
        )

"""TUF's fetcher interface over our httpx client.

``tuf.ngclient.Updater`` then fetches metadata and targets through the same connection, TLS
pinning and credentials as everything else the caller sends.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
from tuf.api import exceptions as tuf_exc
from tuf.ngclient.fetcher import FetcherInterface

CHUNK = 1 << 16


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

"""The authenticated httpx client every client-side caller builds the same way.

One place sets the pinned TLS trust (``net/tls.py``), the optional mTLS client certificate,
the device's bearer credentials, timeouts and connection limits, so the agent, enrollment,
bundle creation and the management client cannot drift apart on any of them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from otaguard.net.tls import tls_context


@dataclass(frozen=True)
class DeviceCredentials:
    device_id: str
    secret: str | None  # None: the client certificate authenticates; no bearer is sent

    def headers(self) -> dict[str, str]:
        if self.secret is None:
            return {"X-OTAGuard-Device": self.device_id}
        return {"X-OTAGuard-Device": self.device_id, "Authorization": f"Bearer {self.secret}"}


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

"""The device's enrollment and renewal calls (over the pinned server TLS)."""

from __future__ import annotations

from pathlib import Path

import httpx

from otaguard.net.replies import parse_certificate_reply
from otaguard.net.tls import tls_context


def enroll(server: str, server_ca: Path, device_id: str, token: str, csr_pem: str) -> str:
    """POST the CSR with the one-time token; return the certificate chain (leaf first).

    Raises:
        httpx.HTTPError: unreachable, or an error status.
        ReplyError: the answer holds no certificate.
    """
    with httpx.Client(base_url=server, verify=tls_context(server_ca), timeout=20.0) as client:
        r = client.post(
            "/device/v1/enroll", json={"device_id": device_id, "token": token, "csr": csr_pem}
        )
        r.raise_for_status()
        return parse_certificate_reply(r.content, "enrollment").certificate


def renew(client: httpx.Client, csr_pem: str) -> str:
    """POST a new CSR over an mTLS client holding the current certificate.

    Raises:
        httpx.HTTPError: unreachable, or an error status.
        ReplyError: the answer holds no certificate.
    """
    r = client.post("/device/v1/renew", json={"csr": csr_pem})
    r.raise_for_status()
    return parse_certificate_reply(r.content, "renewal").certificate

"""Client TLS: trust only the pinned server CA, TLS 1.2 or newer.

A device and the maker's tools must not trust the system's CA store for the update server: a
certificate any public CA issued would otherwise let a network attacker speak for the server.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """Client TLS context that trusts only ``ca_file`` (the pinned server CA), TLS >= 1.2."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx

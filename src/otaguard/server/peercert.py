"""The verified TLS client certificate of a request, for ASGI handlers under uvicorn.

uvicorn (0.54) puts no TLS information in the ASGI scope (no ``scope["extensions"]["tls"]``),
and its HTTP/1.1 protocols build the scope inside ``data_received`` where we cannot reach. But
each connection gets its own protocol object, created with ``config.loaded_app`` as
``self.app``; ``with_peer_certificate`` subclasses the protocol class uvicorn would use and,
once the TLS handshake is done (``connection_made``), reads the peer certificate from the
transport's ``ssl_object`` and wraps ``self.app`` for that one connection so every request on it
carries the certificate in the ASGI TLS extension: ``scope["extensions"]["tls"]
["client_cert_chain"]`` (PEM strings, leaf first). The handshake verified the chain against the
device CA (``CERT_OPTIONAL``: no certificate is fine, a bad one fails the handshake).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

TLS_EXTENSION = "tls"
DIRECT_PEER = "otaguard.direct_peer"


def _with_tls(app: ASGIApp, chain: list[str]) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # In place, not a copy: uvicorn's access log reads this same dict after the
            # proxy-headers middleware rewrote ``client`` in it.
            extensions = dict(scope.get("extensions") or {})
            if chain:
                extensions[TLS_EXTENSION] = {"client_cert_chain": chain}
            # The TCP peer, before uvicorn's proxy-headers middleware (which sits inside this
            # wrapper) replaces ``client`` with an X-Forwarded-For address.
            client = scope.get("client")
            extensions[DIRECT_PEER] = client[0] if client else None
            scope["extensions"] = extensions
        await app(scope, receive, send)

    return wrapped


def peer_chain(transport: asyncio.BaseTransport) -> list[str]:
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return []
    der = ssl_object.getpeercert(binary_form=True)
    return [ssl.DER_cert_to_PEM_cert(der)] if der else []


def with_peer_certificate(base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """``base`` (an uvicorn HTTP/1.1 protocol class) that exposes the client certificate."""

    class PeerCertificateProtocol(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            chain = peer_chain(transport)  # handshake done: asyncio calls this after it
            # ``app`` is uvicorn's per-connection attribute (the base class is only known as
            # ``type[asyncio.Protocol]`` to the type checker).
            app: ASGIApp = self.__dict__["app"]
            self.__dict__["app"] = _with_tls(app, chain)

    PeerCertificateProtocol.__name__ = f"PeerCertificate{base.__name__}"
    return PeerCertificateProtocol


def client_cert_pem(scope: dict[str, Any] | Any) -> str | None:
    """The leaf client certificate (PEM) the TLS layer verified for this request, if any."""
    tls = (scope.get("extensions") or {}).get(TLS_EXTENSION) or {}
    chain = tls.get("client_cert_chain") or []
    return str(chain[0]) if chain else None


def direct_peer(scope: dict[str, Any] | Any) -> str | None:
    """The address of the TCP peer (the proxy, if there is one)."""
    extensions = scope.get("extensions") or {}
    if DIRECT_PEER in extensions:
        return extensions[DIRECT_PEER]  # type: ignore[no-any-return]
    client = scope.get("client")
    return str(client[0]) if client else None

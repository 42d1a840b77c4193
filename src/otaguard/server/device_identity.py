"""Device identity on the server: who a request's client certificate names (direct mTLS or a
trusted TLS-terminating proxy), and revocation per request. (The enrollment and renewal
routes are in ``server/routes/pki.py``.)

Direct TLS: the handshake verified the certificate against the device CA chain; it reaches
the app through ``server/peercert.py``. Behind a proxy: the certificate comes URL-encoded PEM in
``settings.client_cert_header``, believed only when the peer address is in
``settings.client_cert_proxies``, and is verified here against the issuing CA. Either way the
serial is checked on every request against the revoked serials, kept in memory and re-read
from the database at most every ``settings.revocation_refresh_seconds`` (no query per request).
"""

import functools
from urllib.parse import unquote

from cryptography import x509
from starlette.types import Scope

from otaguard.errors import AuthError
from otaguard.identity import ca
from otaguard.server.context import ServerContext
from otaguard.server.peercert import client_cert_pem, direct_peer


def _load(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise AuthError(f"unreadable client certificate: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _handshake_identity(pem: str) -> ca.DeviceIdentity:
    """Who a certificate the TLS handshake verified names (parsed once per certificate; a
    device sends the same one on every request of every connection)."""
    return ca.device_identity(_load(pem))


def scope_header(scope: Scope, name: str) -> str | None:
    """A request header from the ASGI scope (``name`` in lower case)."""
    key = name.encode("latin-1")
    for header, value in scope.get("headers", ()):
        if header == key:
            return bytes(value).decode("latin-1")
    return None


def certificate_device(ctx: ServerContext, scope: Scope) -> ca.DeviceIdentity | None:
    """The device the request's verified client certificate names; None without one.
    Raises ``AuthError`` for a revoked, expired, foreign or malformed certificate."""
    authority = ctx.device_ca
    settings = ctx.settings
    pem = client_cert_pem(scope)
    if pem is not None:
        who = _handshake_identity(pem)  # chain verified in the handshake
        if ca.now() > who.not_after:  # a connection can outlive its certificate
            raise AuthError(f"certificate {who.serial} of {who.device_id} has expired")
    else:
        header = settings.client_cert_header
        peer = direct_peer(scope)
        value = scope_header(scope, header.lower()) if header else None
        if not value or peer not in settings.client_cert_proxies:
            return None
        who = ca.verify_device_cert(_load(unquote(value)), authority.intermediate())
    if who.serial in authority.revoked_serials():
        raise AuthError(f"certificate {who.serial} of {who.device_id} is revoked")
    return who

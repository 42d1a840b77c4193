"""Device identity on the server: who a request's client certificate names (direct mTLS or a
trusted TLS-terminating proxy), revocation per request, and the enrollment/renewal routes.

Direct TLS: the handshake verified the certificate against the device CA chain; it reaches
the app through ``server/peercert.py``. Behind a proxy: the certificate comes URL-encoded PEM in
``settings.client_cert_header``, believed only when the peer address is in
``settings.client_cert_proxies``, and is verified here against the issuing CA. Either way the
serial is checked on every request against the revoked serials, kept in memory and re-read
from the database at most every ``settings.revocation_refresh_seconds`` (no query per request).
"""

import functools
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi import Path as FastApiPath
from pydantic import BaseModel, Field
from starlette.types import Scope

from otaguard.errors import AuthError, CompatibilityError, OTAGuardError
from otaguard.identity import ca
from otaguard.identity.store import token_fingerprint
from otaguard.server import schemas
from otaguard.server.context import ServerContext
from otaguard.server.metrics import ServerMetrics
from otaguard.server.peercert import client_cert_pem, direct_peer

MAX_CSR = 16 << 10


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


class EnrollIn(BaseModel):
    device_id: str = Field(pattern=schemas.DEVICE_ID)
    token: str = Field(min_length=16, max_length=256)
    csr: str = Field(max_length=MAX_CSR)


class RenewIn(BaseModel):
    csr: str = Field(max_length=MAX_CSR)


class CertificateOut(BaseModel):
    device_id: str
    hardware: str
    serial: str
    not_after: str
    certificate: str  # PEM, leaf only
    chain: str  # PEM, intermediate then root


class EnrollmentTokenIn(BaseModel):
    ttl_seconds: int = Field(default=86400, ge=60, le=30 * 86400)


class EnrollmentTokenOut(BaseModel):
    device_id: str
    token: str  # shown once; the server keeps only its hash
    expires_in: int


class RevokedOut(BaseModel):
    device_id: str
    revoked: list[str]


class IssuedCertificateOut(BaseModel):
    serial: str  # decimal, as in RevokedOut and the CRL
    device_id: str
    hardware: str
    not_after: str
    revoked_at: str | None


class SerialRevokedOut(BaseModel):
    serial: str
    newly_revoked: bool  # false: it was revoked already


def _out(ctx: ServerContext, cert: x509.Certificate) -> CertificateOut:
    who = ca.device_identity(cert)
    return CertificateOut(
        device_id=who.device_id,
        hardware=who.hardware,
        serial=str(who.serial),
        not_after=who.not_after.isoformat(),
        certificate=cert.public_bytes(serialization.Encoding.PEM).decode(),
        chain=ctx.device_ca.chain_pem(),
    )


def install(
    app: FastAPI,
    ctx: ServerContext,
    metrics: ServerMetrics,
    operator: Callable[..., Any],
    responses: dict[int | str, dict[str, Any]],
) -> None:
    """Add the enrollment/renewal device routes and the operator's token/revoke routes."""
    import datetime as dt

    from otaguard.server.auth import audit_detail, client_address  # auth imports this module

    Operator = Annotated[str, Depends(operator)]
    DeviceIdPath = Annotated[str, FastApiPath(pattern=schemas.DEVICE_ID)]
    # X.509 serials are at most 20 octets: at most 49 decimal digits.
    SerialPath = Annotated[str, FastApiPath(pattern=r"^[1-9][0-9]{0,48}$")]
    dev = APIRouter(prefix="/device/v1", tags=["device"], responses=responses)

    @dev.post("/enroll", response_model=CertificateOut, status_code=201)
    def enroll(body: EnrollIn, request: Request) -> CertificateOut:
        """Exchange a one-time factory token and a CSR (the device's own key) for a client
        certificate naming the device."""
        client = client_address(request)
        # The token itself is a secret: the audit log gets only a short hash of it.
        facts = {"token": token_fingerprint(body.token), "client": client}

        def refused(exc: OTAGuardError) -> OTAGuardError:
            ctx.identity.audit(
                actor=f"device:{body.device_id}",
                action="device.enroll",
                target=body.device_id,
                outcome="denied" if isinstance(exc, AuthError) else exc.code,
                detail={**facts, "reason": str(exc)},
            )
            return exc

        try:
            hardware = ctx.device_ca.consume_token(body.token, body.device_id)
        except AuthError as exc:
            metrics.auth_failures.labels("device").inc()
            raise refused(exc) from None
        try:
            device = ctx.store.get_device(body.device_id)  # registered by an operator first
            if hardware != device.hardware:
                raise CompatibilityError("token hardware differs from the registered device")
            cert = ctx.device_ca.issue(body.csr, device_id=body.device_id, hardware=hardware)
        except OTAGuardError as exc:
            raise refused(exc) from None
        out = _out(ctx, cert)
        ctx.identity.audit(
            actor=f"device:{body.device_id}",
            action="device.enroll",
            target=body.device_id,
            detail={
                **facts,
                "serial": out.serial,
                "hardware": hardware,
                "not_after": out.not_after,
            },
        )
        return out

    def current_certificate(request: Request) -> ca.DeviceIdentity:
        try:
            who = certificate_device(ctx, request.scope)
            if who is None:
                raise AuthError("renewal needs the current client certificate")
        except AuthError as exc:
            metrics.auth_failures.labels("device").inc()
            ctx.identity.audit(
                actor="anonymous",
                action="device.renew",
                target="POST /device/v1/renew",
                outcome="denied",
                detail={"reason": str(exc), "client": client_address(request)},
            )
            raise
        return who

    @dev.post("/renew", response_model=CertificateOut, status_code=201)
    def renew(
        body: RenewIn,
        request: Request,
        who: Annotated[ca.DeviceIdentity, Depends(current_certificate)],
    ) -> CertificateOut:
        """A new certificate (new or same key) for the device the current, valid, unrevoked
        client certificate names; names are copied from it, not from the CSR."""
        facts = {"old_serial": str(who.serial), "client": client_address(request)}
        try:
            cert = ctx.device_ca.issue(body.csr, device_id=who.device_id, hardware=who.hardware)
        except OTAGuardError as exc:
            ctx.identity.audit(
                actor=f"device:{who.device_id}",
                action="device.renew",
                target=who.device_id,
                outcome=exc.code,
                detail={**facts, "reason": str(exc)},
            )
            raise
        out = _out(ctx, cert)
        ctx.identity.audit(
            actor=f"device:{who.device_id}",
            action="device.renew",
            target=who.device_id,
            detail={**facts, "serial": out.serial, "not_after": out.not_after},
        )
        return out

    api = APIRouter(prefix="/api/v1", tags=["devices"], responses=responses)

    @api.post(
        "/devices/{device_id}/enrollment-token",
        response_model=EnrollmentTokenOut,
        status_code=201,
    )
    def enrollment_token(
        device_id: DeviceIdPath, body: EnrollmentTokenIn, request: Request, _user: Operator
    ) -> EnrollmentTokenOut:
        """A one-time token with which a registered device enrolls its own key."""
        device = ctx.store.get_device(device_id)
        token = ctx.device_ca.create_token(
            device_id,
            device.hardware,
            dt.timedelta(seconds=body.ttl_seconds),
            created_by=f"user:{_user}",
        )
        audit_detail(
            request,
            device=device_id,
            hardware=device.hardware,
            enrollment_token=token_fingerprint(token),
            ttl_seconds=body.ttl_seconds,
        )
        return EnrollmentTokenOut(device_id=device_id, token=token, expires_in=body.ttl_seconds)

    @api.post("/devices/{device_id}/revoke-certificates", response_model=RevokedOut)
    def revoke(device_id: DeviceIdPath, request: Request, _user: Operator) -> RevokedOut:
        """Revoke every certificate issued to the device (CRL re-signed); refused from the
        device's next request."""
        serials = ctx.device_ca.revoke(device_id=device_id, reason=f"revoked by user:{_user}")
        audit_detail(request, device=device_id, revoked=[str(s) for s in serials])
        return RevokedOut(device_id=device_id, revoked=[str(s) for s in serials])

    @api.get("/devices/{device_id}/certificates", response_model=list[IssuedCertificateOut])
    def certificates(device_id: DeviceIdPath, _user: Operator) -> list[IssuedCertificateOut]:
        """Every certificate issued to the device, oldest first, with its revocation."""
        ctx.store.get_device(device_id)  # 404 for an unknown device
        return [
            IssuedCertificateOut(
                serial=str(c.serial),
                device_id=c.device_id,
                hardware=c.hardware,
                not_after=c.not_after.isoformat(),
                revoked_at=c.revoked_at.isoformat() if c.revoked_at else None,
            )
            for c in ctx.device_ca.certificates(device_id)
        ]

    @api.post("/certificates/{serial}/revoke", response_model=SerialRevokedOut)
    def revoke_serial(serial: SerialPath, request: Request, _user: Operator) -> SerialRevokedOut:
        """Revoke one certificate by serial (say, the one a renewal replaced, or a leaked
        one), leaving the device's others valid; refused from its next request."""
        new = ctx.device_ca.revoke(serial=int(serial), reason=f"revoked by user:{_user}")
        audit_detail(request, serial=serial, newly_revoked=bool(new))
        return SerialRevokedOut(serial=serial, newly_revoked=bool(new))

    pki = APIRouter(prefix="/pki", tags=["repository"])

    @pki.get("/device-ca.pem", response_class=Response)
    def device_ca_chain() -> Response:
        """The device CA chain (issuing intermediate, then root), PEM: what a TLS-terminating
        proxy verifies device certificates against. Public: certificates only."""
        return Response(ctx.device_ca.chain_pem(), media_type="application/x-pem-file")

    @pki.get("/device-ca.crl", response_class=Response)
    def device_ca_crl() -> Response:
        """The current CRL of the device CA, PEM, signed by the intermediate (a proxy that
        checks revocation itself fetches it). Public: it is signed."""
        ctx.device_ca.revoked_serials()  # picks up a newer CRL from the database if due
        return Response(
            ctx.device_ca.crl_pem(),
            media_type="application/pkix-crl",
            headers={"Cache-Control": "no-cache"},
        )

    app.include_router(dev)
    app.include_router(api)
    app.include_router(pki)

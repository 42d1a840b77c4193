"""Device identity routes: enrollment with a one-time factory token and renewal by the
current client certificate (device API), enrollment tokens, certificates and revocation
(management API), and the device CA's public chain and CRL (``/pki``).

Which device a request's certificate names, and the revocation check on every request, are
``server/device_identity.py``'s."""

import datetime as dt
from typing import Annotated

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends, Request, Response
from fastapi import Path as FastApiPath

from otaguard.errors import AuthError, CompatibilityError, OTAGuardError
from otaguard.identity import ca
from otaguard.identity.store import token_fingerprint
from otaguard.server.auth import audit_detail, client_address
from otaguard.server.context import ServerContext
from otaguard.server.device_identity import certificate_device
from otaguard.server.identity_schemas import (
    CertificateOut,
    EnrollIn,
    EnrollmentTokenIn,
    EnrollmentTokenOut,
    IssuedCertificateOut,
    RenewIn,
    RevokedOut,
    SerialRevokedOut,
)
from otaguard.server.routes.params import ERROR_RESPONSES, DeviceIdPath, Operator
from otaguard.server.state import Ctx, Metrics, context_of, metrics_of

# X.509 serials are at most 20 octets: at most 49 decimal digits.
SerialPath = Annotated[str, FastApiPath(pattern=r"^[1-9][0-9]{0,48}$")]

device_router = APIRouter(prefix="/device/v1", tags=["device"], responses=ERROR_RESPONSES)
router = APIRouter(prefix="/api/v1", tags=["devices"], responses=ERROR_RESPONSES)
ca_router = APIRouter(prefix="/pki", tags=["repository"])


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


def _enroll_refused(
    ctx: ServerContext, device_id: str, facts: dict[str, str], exc: OTAGuardError
) -> OTAGuardError:
    """Audit a refused enrollment; returns ``exc`` for the caller to raise."""
    ctx.identity.audit(
        actor=f"device:{device_id}",
        action="device.enroll",
        target=device_id,
        outcome="denied" if isinstance(exc, AuthError) else exc.code,
        detail={**facts, "reason": str(exc)},
    )
    return exc


# -- device API --------------------------------------------------------------------------------
@device_router.post("/enroll", response_model=CertificateOut, status_code=201)
def enroll(body: EnrollIn, request: Request, ctx: Ctx, metrics: Metrics) -> CertificateOut:
    """Exchange a one-time factory token and a CSR (the device's own key) for a client
    certificate naming the device."""
    # The token itself is a secret: the audit log gets only a short hash of it.
    facts = {"token": token_fingerprint(body.token), "client": client_address(request)}
    try:
        hardware = ctx.device_ca.consume_token(body.token, body.device_id)
    except AuthError as exc:
        metrics.auth_failures.labels("device").inc()
        ctx.refusals.failed(facts["client"], "POST /device/v1/enroll")
        raise _enroll_refused(ctx, body.device_id, facts, exc) from None
    try:
        device = ctx.store.get_device(body.device_id)  # registered by an operator first
        if hardware != device.hardware:
            raise CompatibilityError("token hardware differs from the registered device")
        cert = ctx.device_ca.issue(body.csr, device_id=body.device_id, hardware=hardware)
        # An enrollment starts the device's manifest count anew (a re-provisioned device's
        # agent counts from 1 again): docs/SECURITY.md "Check-in replay".
        reset = ctx.store.devices.reset_manifest_order(body.device_id)
    except OTAGuardError as exc:
        raise _enroll_refused(ctx, body.device_id, facts, exc) from None
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
            "manifest_order_reset": reset,
        },
    )
    return out


def current_certificate(request: Request) -> ca.DeviceIdentity:
    """The dependency of a renewal: the device the current client certificate names."""
    ctx = context_of(request)
    try:
        who = certificate_device(ctx, request.scope)
        if who is None:
            raise AuthError("renewal needs the current client certificate")
    except AuthError as exc:
        metrics_of(request).auth_failures.labels("device").inc()
        ctx.refusals.failed(client_address(request), "POST /device/v1/renew")
        ctx.identity.audit(
            actor="anonymous",
            action="device.renew",
            target="POST /device/v1/renew",
            outcome="denied",
            detail={"reason": str(exc), "client": client_address(request)},
        )
        raise
    return who


@device_router.post("/renew", response_model=CertificateOut, status_code=201)
def renew(
    body: RenewIn,
    request: Request,
    who: Annotated[ca.DeviceIdentity, Depends(current_certificate)],
    ctx: Ctx,
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


# -- management API ----------------------------------------------------------------------------
@router.post(
    "/devices/{device_id}/enrollment-token",
    response_model=EnrollmentTokenOut,
    status_code=201,
)
def enrollment_token(
    device_id: DeviceIdPath,
    body: EnrollmentTokenIn,
    request: Request,
    _user: Operator,
    ctx: Ctx,
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


@router.post("/devices/{device_id}/revoke-certificates", response_model=RevokedOut)
def revoke(device_id: DeviceIdPath, request: Request, _user: Operator, ctx: Ctx) -> RevokedOut:
    """Revoke every certificate issued to the device (CRL re-signed); refused from the
    device's next request."""
    serials = ctx.device_ca.revoke(device_id=device_id, reason=f"revoked by user:{_user}")
    audit_detail(request, device=device_id, revoked=[str(s) for s in serials])
    return RevokedOut(device_id=device_id, revoked=[str(s) for s in serials])


@router.get("/devices/{device_id}/certificates", response_model=list[IssuedCertificateOut])
def certificates(device_id: DeviceIdPath, _user: Operator, ctx: Ctx) -> list[IssuedCertificateOut]:
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


@router.post("/certificates/{serial}/revoke", response_model=SerialRevokedOut)
def revoke_serial(
    serial: SerialPath, request: Request, _user: Operator, ctx: Ctx
) -> SerialRevokedOut:
    """Revoke one certificate by serial (say, the one a renewal replaced, or a leaked
    one), leaving the device's others valid; refused from its next request."""
    new = ctx.device_ca.revoke(serial=int(serial), reason=f"revoked by user:{_user}")
    audit_detail(request, serial=serial, newly_revoked=bool(new))
    return SerialRevokedOut(serial=serial, newly_revoked=bool(new))


# -- public CA material ------------------------------------------------------------------------
@ca_router.get("/device-ca.pem", response_class=Response)
def device_ca_chain(ctx: Ctx) -> Response:
    """The device CA chain (issuing intermediate, then root), PEM: what a TLS-terminating
    proxy verifies device certificates against. Public: certificates only."""
    return Response(ctx.device_ca.chain_pem(), media_type="application/x-pem-file")


@ca_router.get("/device-ca.crl", response_class=Response)
def device_ca_crl(ctx: Ctx) -> Response:
    """The current CRL of the device CA, PEM, signed by the intermediate (a proxy that
    checks revocation itself fetches it). Public: it is signed."""
    ctx.device_ca.revoked_serials()  # picks up a newer CRL from the database if due
    return Response(
        ctx.device_ca.crl_pem(),
        media_type="application/pkix-crl",
        headers={"Cache-Control": "no-cache"},
    )

"""The device certificate authority: pure X.509 operations (``cryptography``), no files.

An offline root CA signs an online issuing intermediate; the intermediate signs device
certificates from the device's own CSR and the certificate revocation list (CRL).

A device certificate names the device twice: the subject CN is the device id and a URI SAN is
``urn:otaguard:device:<id>``; the hardware type is a second URI SAN
``urn:otaguard:hardware:<type>``. Extended key usage is TLS client authentication only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otaguard.crypto.tls import ca_certificate_builder, subject_name
from otaguard.errors import AuthError, CompatibilityError

DEVICE_URN = "urn:otaguard:device:"
HARDWARE_URN = "urn:otaguard:hardware:"
ROOT_VALIDITY = dt.timedelta(days=3650 * 2)
INTERMEDIATE_VALIDITY = dt.timedelta(days=3650)
DEVICE_VALIDITY = dt.timedelta(days=365)
CRL_VALIDITY = dt.timedelta(days=7)

CAKey = ec.EllipticCurvePrivateKey
DeviceKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    hardware: str
    serial: int
    not_after: dt.datetime


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return subject_name(common_name, "OTAGuard")


def create_root(common_name: str = "OTAGuard device root CA") -> tuple[CAKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP384R1())
    t = now()
    cert = ca_certificate_builder(
        _name(common_name),
        _name(common_name),
        key.public_key(),
        not_before=t - dt.timedelta(minutes=5),
        not_after=t + ROOT_VALIDITY,
        path_length=1,
    ).sign(key, hashes.SHA384())
    return key, cert


def create_intermediate(
    root_key: CAKey,
    root_cert: x509.Certificate,
    common_name: str = "OTAGuard device issuing CA",
) -> tuple[CAKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    t = now()
    cert = (
        ca_certificate_builder(
            _name(common_name),
            root_cert.subject,
            key.public_key(),
            not_before=t - dt.timedelta(minutes=5),
            not_after=min(t + INTERMEDIATE_VALIDITY, root_cert.not_valid_after_utc),
            path_length=0,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA384())
    )
    return key, cert


def csr_public_key(csr: x509.CertificateSigningRequest) -> DeviceKey:
    """The CSR's key if it is ECDSA P-256 or Ed25519 and the CSR is self-signed by it."""
    try:
        key = csr.public_key()
    except UnsupportedAlgorithm as exc:
        raise CompatibilityError(f"unsupported CSR key: {exc}") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise CompatibilityError(f"device keys must be ECDSA P-256, not {key.curve.name}")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise CompatibilityError("device keys must be ECDSA P-256 or Ed25519")
    try:
        valid = csr.is_signature_valid
    except UnsupportedAlgorithm as exc:
        raise CompatibilityError(f"unsupported CSR signature: {exc}") from None
    if not valid:
        raise AuthError("the CSR is not signed by the key it carries")
    return key


def load_csr(pem: str | bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise CompatibilityError(f"not a PEM certificate signing request: {exc}") from None


def issue_device_cert(
    csr: x509.CertificateSigningRequest,
    *,
    device_id: str,
    hardware: str,
    issuer_key: CAKey,
    issuer_cert: x509.Certificate,
    validity: dt.timedelta = DEVICE_VALIDITY,
) -> x509.Certificate:
    """A client certificate for ``device_id`` on the CSR's key. Only the key is taken from the
    CSR: the names come from the caller (the enrollment token or the current certificate)."""
    key = csr_public_key(csr)
    t = now()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(device_id))
        .issuer_name(issuer_cert.subject)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - dt.timedelta(minutes=5))
        .not_valid_after(min(t + validity, issuer_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(DEVICE_URN + device_id),
                    x509.UniformResourceIdentifier(HARDWARE_URN + hardware),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )


def device_identity(cert: x509.Certificate) -> DeviceIdentity:
    """The device id and hardware a device certificate names (CN and URI SAN must agree)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise AuthError("certificate names no device (no subject alternative name)") from None
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    ids = [u.removeprefix(DEVICE_URN) for u in uris if u.startswith(DEVICE_URN)]
    hws = [u.removeprefix(HARDWARE_URN) for u in uris if u.startswith(HARDWARE_URN)]
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(ids) != 1 or cns != ids or len(hws) != 1 or not ids[0]:
        raise AuthError("certificate does not name exactly one device consistently")
    return DeviceIdentity(ids[0], hws[0], cert.serial_number, cert.not_valid_after_utc)


def verify_device_cert(
    cert: x509.Certificate, issuer_cert: x509.Certificate, at: dt.datetime | None = None
) -> DeviceIdentity:
    """Check that ``issuer_cert`` signed ``cert``, that it is valid now and is a client
    certificate; return who it names. (Used for certificates forwarded by a trusted proxy; on
    direct connections the TLS handshake has already done this.)"""
    try:
        cert.verify_directly_issued_by(issuer_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise AuthError(f"certificate not issued by the device CA: {exc}") from None
    t = at or now()
    if not cert.not_valid_before_utc <= t <= cert.not_valid_after_utc:
        raise AuthError("device certificate is expired or not yet valid")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise AuthError("certificate is not for TLS client authentication") from None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise AuthError("certificate is not for TLS client authentication")
    return device_identity(cert)


def build_crl(
    issuer_key: CAKey,
    issuer_cert: x509.Certificate,
    revoked: dict[int, dt.datetime],
    *,
    number: int,
    validity: dt.timedelta = CRL_VALIDITY,
) -> x509.CertificateRevocationList:
    t = now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(t - dt.timedelta(minutes=5))
        .next_update(t + validity)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(issuer_key, hashes.SHA256())


def verify_crl(crl: x509.CertificateRevocationList, issuer_cert: x509.Certificate) -> None:
    key = issuer_cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(key):
        raise AuthError("the CRL is not signed by the issuing CA")

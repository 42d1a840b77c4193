"""Local TLS material for the embedded defaults: a CA and a server certificate signed by it.

Used when no certificate is configured: the server then needs no setup, and devices pin the CA
certificate written next to it. Keys are ECDSA P-256, certificates X.509 v3.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otaguard.crypto.keys import write_private

CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=397)
# TLS 1.2 suites a server offers: forward secrecy (ECDHE) and AEAD ciphers only, no CBC (its
# MAC-then-encrypt construction is what Lucky13 and POODLE-style padding oracles attack). TLS
# 1.3 suites are all AEAD and are not set by this string.
TLS12_SERVER_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True)
class TLSFiles:
    ca_cert: Path
    cert: Path
    key: Path


def restrict_ciphers(context: ssl.SSLContext) -> None:
    """Limit ``context``'s TLS 1.2 suites to ``TLS12_SERVER_CIPHERS``."""
    context.set_ciphers(TLS12_SERVER_CIPHERS)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def subject_name(common_name: str, organization: str = "OTAGuard local") -> x509.Name:
    """An X.509 name of an organization and a common name (the local TLS CA's and the
    device CA's certificates)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ca_certificate_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int,
    digital_signature: bool = False,
) -> x509.CertificateBuilder:
    """A CA certificate up to its signature: random serial, validity, critical
    BasicConstraints (CA, ``path_length``), critical KeyUsage (certificate and CRL signing,
    plus ``digital_signature`` if asked) and the subject key identifier. Callers add an
    authority key identifier where there is an issuer, then sign. Shared by the local TLS CA
    and the device CA (``identity/ca.py``)."""
    usage = x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(
    common_name: str = "OTAGuard local CA",
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = ca_certificate_builder(
        subject_name(common_name),
        subject_name(common_name),
        key.public_key(),
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + CA_VALIDITY,
        path_length=1,
        digital_signature=True,
    ).sign(key, hashes.SHA256())
    return key, cert


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hostnames: list[str],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject_name(hostnames[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + SERVER_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def certificate_names(path: Path) -> set[str]:
    """The DNS names and IP addresses a PEM certificate's subjectAltName covers."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(san.get_values_for_type(x509.DNSName)) | ips


def ensure_local_tls(directory: Path, hostnames: list[str] | None = None) -> TLSFiles:
    """Create (once) a local CA and a server certificate for ``hostnames`` in ``directory``.
    When the server certificate lacks a name asked for now, a new one is issued by the same
    CA (devices pin ``ca.pem``, which does not change)."""
    hosts = hostnames or ["localhost", "127.0.0.1", "::1"]
    files = TLSFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if files.ca_cert.exists() and files.cert.exists() and files.key.exists():
        ca_key_path = directory / "ca.key"
        wanted = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in hosts}
        if wanted <= certificate_names(files.cert) or not ca_key_path.exists():
            return files
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        key, cert = make_server_cert(ca_key, ca_cert, hosts)
        write_private(files.key, _key_pem(key))
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return files
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca()
    key, cert = make_server_cert(ca_key, ca_cert, hosts)
    write_private(directory / "ca.key", _key_pem(ca_key))
    write_private(files.key, _key_pem(key))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # ca.pem last: its presence marks the set complete.
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return files

"""The CA certificates (device root and intermediate, local TLS CA) come from one shared
builder (``crypto.tls.ca_certificate_builder``); this pins what each of them carries, so the
sharing changed nothing: extensions in order with criticality and values, signature hash,
names, validity, and the key identifiers chaining."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from otaguard.crypto import tls
from otaguard.identity import ca

BC, KU, SKI, AKI = (
    x509.BasicConstraints,
    x509.KeyUsage,
    x509.SubjectKeyIdentifier,
    x509.AuthorityKeyIdentifier,
)


def _shape(cert: x509.Certificate) -> list[tuple[str, bool]]:
    return [(type(e.value).__name__, e.critical) for e in cert.extensions]


def _usage(cert: x509.Certificate) -> tuple[bool, bool, bool, bool]:
    ku = cert.extensions.get_extension_for_class(KU).value
    return ku.digital_signature, ku.key_cert_sign, ku.crl_sign, ku.key_encipherment


def _path_length(cert: x509.Certificate) -> tuple[bool, int | None]:
    bc = cert.extensions.get_extension_for_class(BC).value
    return bc.ca, bc.path_length


def _lifetime(cert: x509.Certificate) -> dt.timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def test_device_root_and_intermediate() -> None:
    root_key, root = ca.create_root()
    _key, inter = ca.create_intermediate(root_key, root)
    assert _shape(root) == [
        ("BasicConstraints", True),
        ("KeyUsage", True),
        ("SubjectKeyIdentifier", False),
    ]
    assert _shape(inter) == [
        ("BasicConstraints", True),
        ("KeyUsage", True),
        ("SubjectKeyIdentifier", False),
        ("AuthorityKeyIdentifier", False),
    ]
    assert _path_length(root) == (True, 1)
    assert _path_length(inter) == (True, 0)
    assert _usage(root) == _usage(inter) == (False, True, True, False)
    assert isinstance(root.signature_hash_algorithm, hashes.SHA384)
    assert isinstance(inter.signature_hash_algorithm, hashes.SHA384)
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert root.subject == root.issuer
    assert inter.issuer == root.subject
    assert _lifetime(root) == ca.ROOT_VALIDITY + dt.timedelta(minutes=5)
    assert _lifetime(inter) == ca.INTERMEDIATE_VALIDITY + dt.timedelta(minutes=5)
    ski = root.extensions.get_extension_for_class(SKI).value.digest
    assert inter.extensions.get_extension_for_class(AKI).value.key_identifier == ski
    inter.verify_directly_issued_by(root)


def test_local_tls_ca() -> None:
    key, cert = tls.make_ca()
    assert _shape(cert) == [
        ("BasicConstraints", True),
        ("KeyUsage", True),
        ("SubjectKeyIdentifier", False),
    ]
    assert _path_length(cert) == (True, 1)
    assert _usage(cert) == (True, True, True, False)  # this CA also has digitalSignature
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.subject == cert.issuer
    assert _lifetime(cert) == tls.CA_VALIDITY + dt.timedelta(minutes=5)
    _skey, server = tls.make_server_cert(key, cert, ["localhost", "127.0.0.1"])
    server.verify_directly_issued_by(cert)

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509

from otaguard.crypto.tls import ensure_local_tls


def test_local_tls_is_created_once_and_chains_to_ca(tmp_path: Path) -> None:
    files = ensure_local_tls(tmp_path, ["localhost", "127.0.0.1"])
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (tmp_path / "server.key").stat().st_mode & 0o777 == 0o600
    before = files.cert.read_bytes()
    again = ensure_local_tls(tmp_path, ["localhost"])
    assert again.cert.read_bytes() == before

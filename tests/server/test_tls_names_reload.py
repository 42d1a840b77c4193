"""Server names and certificates: ``--tls-hostname`` names go into the generated certificate
(re-issued by the same local CA, so devices' pinned ``ca.pem`` still holds), and an
operator-supplied certificate and key are reloaded by the running server when they change, with
a broken pair refused and the old one kept."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from otaguard.cli.main import app
from otaguard.crypto.tls import (
    TLSFiles,
    certificate_names,
    ensure_local_tls,
    make_ca,
    make_server_cert,
)
from otaguard.server.context import ServerContext, ServerSettings
from otaguard.server.runner import start_in_thread


def test_tls_hostnames_reissue_the_server_certificate_from_the_same_ca(tmp_path: Path) -> None:
    files = ensure_local_tls(tmp_path, ["localhost", "127.0.0.1"])
    ca_before, cert_before = files.ca_cert.read_bytes(), files.cert.read_bytes()
    assert "ota.example.com" not in certificate_names(files.cert)
    ensure_local_tls(tmp_path, ["localhost", "127.0.0.1"])
    assert files.cert.read_bytes() == cert_before  # control: same names, nothing re-issued
    ensure_local_tls(tmp_path, ["localhost", "127.0.0.1", "ota.example.com", "10.1.2.3"])
    assert files.ca_cert.read_bytes() == ca_before
    assert {"ota.example.com", "10.1.2.3", "localhost"} <= certificate_names(files.cert)
    ca = x509.load_pem_x509_certificate(ca_before)
    x509.load_pem_x509_certificate(files.cert.read_bytes()).verify_directly_issued_by(ca)


def write_pair(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], cert_path: Path, key_path: Path
) -> int:
    key, cert = make_server_cert(ca[0], ca[1], ["127.0.0.1", "localhost"])
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert.serial_number


def served_serial(port: int, ca_file: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_operator_certificate_reloaded_without_restart(tmp_path: Path) -> None:
    ca = make_ca("operator CA")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    first = write_pair(ca, cert, key)
    settings = ServerSettings(data_dir=tmp_path / "data", port=0, tls=TLSFiles(cert, cert, key))
    ctx = ServerContext.open(settings)
    running = start_in_thread(ctx)
    try:
        assert running.reloader is not None
        port = int(running.url.rsplit(":", 1)[1])
        assert served_serial(port, ca_file) == first
        assert not running.reloader.check()  # control: nothing changed
        second = write_pair(ca, cert, key)
        assert running.reloader.check()
        assert served_serial(port, ca_file) == second  # the same server, the new certificate
        # A half-done renewal (a key that does not match) is refused; the server keeps going.
        other = tmp_path / "other"
        other.mkdir()
        write_pair(ca, other / "c.pem", key)
        assert not running.reloader.check()
        assert served_serial(port, ca_file) == second
    finally:
        running.stop()
        ctx.close()


def test_tls_cert_without_key_refused(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    result = CliRunner().invoke(
        app, ["server", "--data-dir", str(tmp_path / "d"), "--tls-cert", str(tmp_path / "c.pem")]
    )
    assert result.exit_code == 2
    assert "go together" in result.output

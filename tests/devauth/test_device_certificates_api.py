"""Operators list a device's certificates and revoke one by serial; the device CA chain and its
CRL are published at /pki for TLS-terminating proxies."""

from __future__ import annotations

from pathlib import Path

import httpx
from cryptography import x509

from otaguard.demo import HARDWARE, Demo
from otaguard.identity.device_keys import load_or_create_key, make_csr
from otaguard.identity.enroll import enroll, renew
from otaguard.net.client import make_client
from otaguard.net.tls import tls_context


def test_list_and_revoke_one_certificate_by_serial(demo_world: Demo, tmp_path: Path) -> None:
    d = demo_world
    assert d.api is not None
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    server_ca = d.ctx.settings.tls.ca_cert
    d.api.register_device("dev-c", HARDWARE, ["c"])
    key = load_or_create_key(tmp_path / "old.key")
    (tmp_path / "old.pem").write_text(
        enroll(d.url, server_ca, "dev-c", d.api.enrollment_token("dev-c"), make_csr(key, "c"))
    )
    old = (tmp_path / "old.pem", tmp_path / "old.key")
    new_key = load_or_create_key(tmp_path / "new.key")
    with make_client(d.url, server_ca, None, client_cert=old) as client:
        (tmp_path / "new.pem").write_text(renew(client, make_csr(new_key, "c")))
    new = (tmp_path / "new.pem", tmp_path / "new.key")

    listed = d.api._call("GET", "/api/v1/devices/dev-c/certificates")
    serials = [c["serial"] for c in listed]
    old_serial = str(x509.load_pem_x509_certificate(old[0].read_bytes()).serial_number)
    new_serial = str(x509.load_pem_x509_certificate(new[0].read_bytes()).serial_number)
    assert serials == [old_serial, new_serial]  # oldest first
    assert all(c["device_id"] == "dev-c" and c["revoked_at"] is None for c in listed)

    out = d.api._call("POST", f"/api/v1/certificates/{old_serial}/revoke")
    assert out == {"serial": old_serial, "newly_revoked": True}
    again = d.api._call("POST", f"/api/v1/certificates/{old_serial}/revoke")
    assert again == {"serial": old_serial, "newly_revoked": False}
    listed = d.api._call("GET", "/api/v1/devices/dev-c/certificates")
    assert [c["revoked_at"] is not None for c in listed] == [True, False]

    body = {"event": "downloading", "version": "1.0.0"}
    with make_client(d.url, server_ca, None, client_cert=old) as by_old:
        assert by_old.post("/device/v1/events", json=body).status_code == 401
    with make_client(d.url, server_ca, None, client_cert=new) as by_new:
        assert by_new.post("/device/v1/events", json=body).status_code == 201

    # Unknown serial, malformed serial, unknown device.
    http = d.api.http
    assert http.post("/api/v1/certificates/12345/revoke").status_code == 404
    assert http.post("/api/v1/certificates/0x12/revoke").status_code == 422
    assert http.get("/api/v1/devices/nobody/certificates").status_code == 404

    # The published CRL (no credentials needed) names the revoked serial, signed by the
    # intermediate of the published chain.
    with httpx.Client(base_url=d.url, verify=tls_context(server_ca)) as anon:
        chain_pem = anon.get("/pki/device-ca.pem")
        crl_pem = anon.get("/pki/device-ca.crl")
    assert chain_pem.status_code == crl_pem.status_code == 200
    intermediate, root = x509.load_pem_x509_certificates(chain_pem.content)
    intermediate.verify_directly_issued_by(root)
    x509.load_pem_x509_certificate(new[0].read_bytes()).verify_directly_issued_by(intermediate)
    crl = x509.load_pem_x509_crl(crl_pem.content)
    assert crl.is_signature_valid(intermediate.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(int(old_serial)) is not None
    assert crl.get_revoked_certificate_by_serial_number(int(new_serial)) is None

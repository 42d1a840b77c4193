"""Two real server processes on one PostgreSQL database and no shared files (B runs on a copy
of A's data directory, as a second host would): a device enrolls through B with a token made
through A, a token used through both at once enrolls once, and a revocation made through A
refuses the device on B within B's refresh interval."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from otaguard.demo import HARDWARE
from otaguard.identity.authority import crl_number
from otaguard.identity.device_keys import load_or_create_key, make_csr
from otaguard.identity.enroll import enroll
from otaguard.net.client import make_client

from .conftest import pg_schema_url
from .fleet_world import ServerProcess, free_port

REFRESH = 1.0  # ServerSettings.revocation_refresh_seconds' default, which the servers use


def _event(client: httpx.Client, report_id: str) -> httpx.Response:
    body = {"event": "downloading", "version": "1.0.0", "report_id": report_id}
    return client.post("/device/v1/events", json=body)


def _file_crl_number(data: Path) -> int:
    return crl_number(x509.load_pem_x509_crl((data / "device-ca" / "crl.pem").read_bytes()))


@pytest.mark.postgres
def test_device_ca_state_is_shared_by_two_servers(tmp_path: Path, pg_database: str) -> None:
    url = pg_schema_url(pg_database)
    data_a, data_b = tmp_path / "host-a", tmp_path / "host-b"
    a = ServerProcess(data_a, free_port(), database=url)
    a.start()
    # The second host gets a copy of the key material (docs/DEPLOYMENT.md), not a share.
    shutil.copytree(data_a, data_b, ignore=shutil.ignore_patterns("*.log", "blobs"))
    b = ServerProcess(data_b, free_port(), database=url)
    b.start()
    admin_a = a.admin()
    try:
        for device in ("dev-x", "dev-y"):
            admin_a.register_device(device, HARDWARE, [device])

        # A token made through A, used through A and B at the same moment: one enrollment.
        token = admin_a.enrollment_token("dev-y")
        key_y = load_or_create_key(tmp_path / "dev-y.key")
        start = threading.Barrier(2)

        def use(server: ServerProcess) -> int:
            start.wait()
            try:
                enroll(server.url, server.ca, "dev-y", token, make_csr(key_y, "dev-y"))
            except httpx.HTTPStatusError as exc:
                return exc.response.status_code
            return 201

        with ThreadPoolExecutor(2) as pool:
            assert sorted(pool.map(use, (a, b))) == [201, 401]

        # Enrolls through B with a token made through A.
        token = admin_a.enrollment_token("dev-x")
        key = load_or_create_key(tmp_path / "dev-x.key")
        pem = enroll(b.url, b.ca, "dev-x", token, make_csr(key, "dev-x"))
        (tmp_path / "dev-x.pem").write_text(pem)
        creds = (tmp_path / "dev-x.pem", tmp_path / "dev-x.key")
        with (
            make_client(a.url, a.ca, None, client_cert=creds) as on_a,
            make_client(b.url, b.ca, None, client_cert=creds) as on_b,
        ):
            assert _event(on_a, "a-before").status_code == 201
            assert _event(on_b, "b-before").status_code == 201
            before = _file_crl_number(data_b)

            # Revoked through A: refused by A at once, by B within its refresh interval.
            revoked = admin_a._call("POST", "/api/v1/devices/dev-x/revoke-certificates")
            revoked_at = time.monotonic()
            assert len(revoked["revoked"]) == 1
            assert _event(on_a, "a-after").status_code == 401
            deadline = revoked_at + REFRESH + 3.0
            for n in range(200):  # bounded: at most 200 requests
                r = _event(on_b, f"b-after-{n}")
                if r.status_code == 401:
                    assert "revoked" in r.json()["detail"]
                    break
                assert r.status_code == 201, r.text
                assert time.monotonic() < deadline, "B still accepts the revoked device"
                time.sleep(0.05)
            else:
                pytest.fail("B still accepts the revoked device")
            assert time.monotonic() - revoked_at < REFRESH + 3.0
        # B's own crl.pem caught up with the revocation, with a larger number.
        assert _file_crl_number(data_b) == _file_crl_number(data_a) > before
    finally:
        admin_a.close()
        a.stop()
        b.stop()


@pytest.mark.postgres
def test_refresh_zero_refuses_a_device_revoked_elsewhere_at_once(
    tmp_path: Path, pg_database: str
) -> None:
    """``otaguard server --revocation-refresh-seconds 0``: B reads the revocations on every
    request, so the first request after the revocation through A is refused."""
    url = pg_schema_url(pg_database)
    data_a, data_b = tmp_path / "host-a", tmp_path / "host-b"
    a = ServerProcess(data_a, free_port(), database=url)
    a.start()
    shutil.copytree(data_a, data_b, ignore=shutil.ignore_patterns("*.log", "blobs"))
    b = ServerProcess(
        data_b, free_port(), database=url, extra_args=("--revocation-refresh-seconds", "0")
    )
    b.start()
    admin_a = a.admin()
    try:
        admin_a.register_device("dev-z", HARDWARE, ["dev-z"])
        token = admin_a.enrollment_token("dev-z")
        key = load_or_create_key(tmp_path / "dev-z.key")
        (tmp_path / "dev-z.pem").write_text(
            enroll(a.url, a.ca, "dev-z", token, make_csr(key, "dev-z"))
        )
        creds = (tmp_path / "dev-z.pem", tmp_path / "dev-z.key")
        with make_client(b.url, b.ca, None, client_cert=creds) as on_b:
            assert _event(on_b, "before").status_code == 201
            admin_a._call("POST", "/api/v1/devices/dev-z/revoke-certificates")
            r = _event(on_b, "after")
            assert r.status_code == 401
            assert "revoked" in r.json()["detail"]
    finally:
        admin_a.close()
        a.stop()
        b.stop()

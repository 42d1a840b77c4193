"""The device CA's state in the database, shared by server processes on several hosts (each
with its own copy of the CA directory's key material), on SQLite and PostgreSQL: a one-time
token used at once through two servers enrolls once, a revocation reaches the other server
within its refresh interval with no query per request in between, and a file-based CA
directory (issued.json, tokens.json) is imported once at server start."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import event, func, select

from otaguard.errors import AuthError
from otaguard.identity import ca
from otaguard.identity.authority import DeviceAuthority, crl_number
from otaguard.identity.device_keys import load_or_create_key, make_csr
from otaguard.identity.store import IdentityStore
from otaguard.server.context import ServerContext, ServerSettings
from otaguard.store.database import Store
from otaguard.store.identity_models import DeviceCertificate, EnrollmentToken


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    DeviceAuthority.init(tmp_path / "ca", tmp_path / "offline" / "root.key")
    return tmp_path / "ca"


@pytest.fixture
def hosts(db_url: str, ca_dir: Path, tmp_path: Path) -> Iterator[list[DeviceAuthority]]:
    """Two server processes' CAs: own copy of the key material, own engine, one database."""
    stores, out = [], []
    for name in ("a", "b"):
        copy = tmp_path / f"host-{name}" / "device-ca"
        shutil.copytree(ca_dir, copy)
        store = Store(db_url)
        store.migrate()
        stores.append(store)
        out.append(DeviceAuthority(copy).attach(IdentityStore(store), refresh_seconds=0.5))
    yield out
    for store in stores:
        store.close()


def _csr(tmp_path: Path, name: str) -> str:
    return make_csr(load_or_create_key(tmp_path / f"{name}.key"), name)


def _file_number(authority: DeviceAuthority) -> int:
    return crl_number(x509.load_pem_x509_crl(authority.crl_pem()))


def test_a_token_used_through_two_servers_at_once_enrolls_once(
    hosts: list[DeviceAuthority],
) -> None:
    a, b = hosts
    for i in range(10):
        device = f"dev-{i}"
        token = (a, b)[i % 2].create_token(device, "rpi4", created_by="user:ops")
        start = threading.Barrier(2)

        def use(
            authority: DeviceAuthority,
            token: str = token,
            device: str = device,
            start: threading.Barrier = start,
        ) -> str:
            start.wait()
            try:
                return authority.consume_token(token, device)
            except AuthError as exc:
                return f"refused: {exc}"

        with ThreadPoolExecutor(2) as pool:
            results = sorted(pool.map(use, (a, b)))
        assert results[0] == "refused: unknown or already used enrollment token", results
        assert results[1] == "rpi4", results
    with a.state.store.session(write=False) as s:  # type: ignore[union-attr]
        used = s.scalar(select(func.count()).where(EnrollmentToken.used_at.is_not(None)))
    assert used == 10


def test_revocation_through_one_server_reaches_the_other_within_the_interval(
    hosts: list[DeviceAuthority], tmp_path: Path
) -> None:
    a, b = hosts
    cert = b.issue(_csr(tmp_path, "dev-1"), device_id="dev-1", hardware="rpi4")
    other = b.issue(_csr(tmp_path, "dev-2"), device_id="dev-2", hardware="rpi4")
    serial = cert.serial_number
    assert serial not in a.revoked_serials()
    assert serial not in b.revoked_serials()
    before = _file_number(a)

    # No query per request: within the interval the in-memory set answers.
    assert b.state is not None
    queries: list[str] = []

    def count(*args: Any) -> None:
        queries.append(str(args[2]))

    event.listen(b.state.store.engine, "before_cursor_execute", count)
    try:
        b.revoked_serials()  # may refresh once
        queries.clear()
        for _ in range(2000):
            b.revoked_serials()
        assert queries == []

        assert a.revoke(device_id="dev-1", reason="test") == [serial]
        assert serial in a.revoked_serials()  # at once in the process that revoked
        revoked_at = time.monotonic()
        deadline = revoked_at + b.refresh_seconds + 2.0
        calls = 0
        while serial not in b.revoked_serials():
            calls += 1
            assert time.monotonic() < deadline, "revocation not seen by the other server"
            time.sleep(0.02)
        seen = time.monotonic() - revoked_at
        assert seen <= b.refresh_seconds + 0.25, seen
        # one cheap read per interval while nothing changed, two when it did
        assert len(queries) <= 12, queries
    finally:
        event.remove(b.state.store.engine, "before_cursor_execute", count)
    assert other.serial_number not in b.revoked_serials()

    # Both hosts' crl.pem list it, with the same, larger number, signed by the intermediate.
    assert _file_number(a) == _file_number(b) > before
    for host in (a, b):
        crl = x509.load_pem_x509_crl(host.crl_pem())
        ca.verify_crl(crl, host.intermediate())
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    # Every re-signing, through either server, raises the number.
    b.refresh_crl()
    assert _file_number(b) == _file_number(a) + 1
    a.revoke(serial=other.serial_number)
    assert _file_number(a) == _file_number(b) + 1


def test_refresh_zero_reads_the_database_on_every_request(hosts: list[DeviceAuthority]) -> None:
    _a, b = hosts
    b.refresh_seconds = 0
    assert b.state is not None
    queries: list[str] = []

    def count(*args: Any) -> None:
        queries.append(str(args[2]))

    event.listen(b.state.store.engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            b.revoked_serials()
    finally:
        event.remove(b.state.store.engine, "before_cursor_execute", count)
    assert sum("device_crl" in q for q in queries) == 5


def _legacy_directory(ca_dir: Path, tmp_path: Path) -> tuple[list[int], str]:
    """Write what the file-based CA kept: issued.json, tokens.json, a CRL (number 5) with
    one issued and one unknown serial revoked. Returns the issued serials and a token."""
    authority = DeviceAuthority(ca_dir)
    certs = [
        authority.sign(_csr(tmp_path, f"old-{i}"), device_id=f"old-{i}", hardware="rpi4")
        for i in range(2)
    ]
    issued = {
        str(c.serial_number): {
            "device": f"old-{i}",
            "hardware": "rpi4",
            "not_after": c.not_valid_after_utc.isoformat(),
        }
        for i, c in enumerate(certs)
    }
    token = "legacy-token-0123456789abcdef"
    tokens = {
        hashlib.sha256(token.encode()).hexdigest(): {
            "device": "old-9",
            "hardware": "rpi4",
            "expires": (ca.now() + dt.timedelta(hours=1)).isoformat(),
        }
    }
    (ca_dir / "issued.json").write_text(json.dumps(issued))
    (ca_dir / "tokens.json").write_text(json.dumps(tokens))
    revoked = {certs[0].serial_number: ca.now(), 4242: ca.now()}
    crl = ca.build_crl(authority._intermediate_key(), authority.intermediate(), revoked, number=5)
    (ca_dir / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return [c.serial_number for c in certs], token


def test_file_based_ca_directory_is_imported_once_at_server_start(
    db_url: str, ca_dir: Path, tmp_path: Path
) -> None:
    serials, token = _legacy_directory(ca_dir, tmp_path)
    kept = {name: (ca_dir / name).read_bytes() for name in ("issued.json", "tokens.json")}
    settings = ServerSettings(data_dir=tmp_path / "data", database_url=db_url, device_ca_dir=ca_dir)
    ctx = ServerContext.open(settings)
    try:
        authority = ctx.device_ca
        assert not (ca_dir / "issued.json").exists()
        assert not (ca_dir / "tokens.json").exists()
        assert (ca_dir / "issued.json.imported").read_bytes() == kept["issued.json"]
        assert (ca_dir / "tokens.json.imported").read_bytes() == kept["tokens.json"]
        assert authority.revoked_serials() == {serials[0], 4242}
        assert _file_number(authority) > 5  # re-signed past the old file's number
        assert authority.consume_token(token, "old-9") == "rpi4"
        # The imported registry revokes by device like a new one.
        assert authority.revoke(device_id="old-1") == [serials[1]]
        number = _file_number(authority)
    finally:
        ctx.close()

    # Another host starting with its own (old) copy of the files: nothing is duplicated or
    # undone (the used token stays used, the revocations stay).
    for name, data in kept.items():
        (ca_dir / name).write_bytes(data)
    ctx = ServerContext.open(settings)
    try:
        authority = ctx.device_ca
        assert not (ca_dir / "issued.json").exists()
        with pytest.raises(AuthError, match="already used"):
            authority.consume_token(token, "old-9")
        assert authority.revoked_serials() == {*serials, 4242}
        assert _file_number(authority) > number
        with ctx.store.session(write=False) as s:
            assert s.scalar(select(func.count()).select_from(DeviceCertificate)) == 3
            assert s.scalar(select(func.count()).select_from(EnrollmentToken)) == 1
    finally:
        ctx.close()
    # A plain restart: no files, nothing to import, the CRL is not re-signed.
    ctx = ServerContext.open(settings)
    try:
        assert _file_number(ctx.device_ca) == number + 1
    finally:
        ctx.close()

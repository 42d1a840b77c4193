"""Issue 11, item 10: the data directory is 0700 and the SQLite database (password hashes,
token digests) and its -wal/-shm files 0600; TLS 1.2 offers only ECDHE with AEAD ciphers (no
CBC), shown against the running server with a client that offers exactly one suite."""

from __future__ import annotations

import socket
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from otaguard.crypto.tls import TLS12_SERVER_CIPHERS, ensure_local_tls, restrict_ciphers
from otaguard.server.context import ServerContext, ServerSettings
from otaguard.server.runner import RunningServer, start_in_thread


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_and_database_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "server"
    ctx = ServerContext.open(ServerSettings(data_dir=data))
    try:
        ctx.store.add_api_token("probe", "x" * 32)  # a write: SQLite has its -wal and -shm
        db = data / "server.db"
        files = [db, db.with_name("server.db-wal"), db.with_name("server.db-shm")]
        assert all(f.exists() for f in files)
        assert _mode(data) == 0o700
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        ctx.close()


def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    """A data directory made by an earlier version (0755, database 0644) is tightened."""
    data = tmp_path / "server"
    ServerContext.open(ServerSettings(data_dir=data)).close()
    data.chmod(0o755)
    (data / "server.db").chmod(0o644)
    ctx = ServerContext.open(ServerSettings(data_dir=data))
    try:
        assert (_mode(data), _mode(data / "server.db")) == (0o700, 0o600)
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    ctx = ServerContext.open(ServerSettings(data_dir=tmp_path_factory.mktemp("tls"), port=0))
    running = start_in_thread(ctx)
    try:
        yield running
    finally:
        running.stop()
        ctx.close()


def _tls12_handshake(port: int, cipher: str) -> str | None:
    """The suite negotiated when the client offers only ``cipher`` over TLS 1.2, or ``None``
    if the server refuses it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            suite = tls.cipher()
            return suite[0] if suite else None
    except ssl.SSLError:
        return None


CBC = ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256"]
AEAD = ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384"]
AEAD += ["ECDHE-ECDSA-CHACHA20-POLY1305"]


def test_tls12_offers_aead_suites_only(server: RunningServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    assert {c: _tls12_handshake(port, c) for c in AEAD} == {c: c for c in AEAD}
    assert {c: _tls12_handshake(port, c) for c in CBC} == dict.fromkeys(CBC)


def test_control_the_cbc_suites_are_offered_by_an_unrestricted_context(tmp_path: Path) -> None:
    """Control: the same certificate in OpenSSL's default server context negotiates the CBC
    suites the test offers, so their refusal above is the restriction's doing."""
    tls = ensure_local_tls(tmp_path)
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    plain.load_cert_chain(tls.cert, tls.key)
    offered = {c["name"] for c in plain.get_ciphers()}
    assert set(CBC[1:]) <= offered  # SHA-1 CBC only with uvicorn's own default ("TLSv1")
    restrict_ciphers(plain)
    restricted = {c["name"] for c in plain.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert restricted
    assert not restricted & set(CBC)
    assert all("GCM" in c or "CHACHA20" in c for c in restricted), TLS12_SERVER_CIPHERS


def test_a_running_server_shortens_the_gil_hand_over(server: RunningServer) -> None:
    """docs/BENCHMARKS.md ("/healthz under a hostile load"): at Python's default 5 ms, sync
    routes on the thread pool waited on hand-overs from the busy event-loop thread."""
    import sys

    from otaguard.server.runner import SWITCH_INTERVAL_S

    assert sys.getswitchinterval() <= SWITCH_INTERVAL_S

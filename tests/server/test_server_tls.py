"""``otaguard server`` transport: TLS on by default with a local CA, TLS 1.1 and below refused,
1.2 and 1.3 accepted; behind a proxy, forwarded client addresses trusted only when configured."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from otaguard.net.tls import tls_context
from otaguard.server.context import ServerContext, ServerSettings
from otaguard.server.runner import RunningServer, start_in_thread

# TLS 1.0/1.1 are deprecated in ssl: exactly what the refusal test needs to offer.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerContext, RunningServer]]:
    ctx = ServerContext.open(ServerSettings(data_dir=tmp_path / "server", port=0))
    running = start_in_thread(ctx)
    try:
        yield ctx, running
    finally:
        running.stop()
        ctx.close()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _client_context(version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers exactly ``version`` (old versions need OpenSSL security level 0)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


def _handshake(port: int, ctx: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version()


def _old_tls_server(ca_dir: Path) -> tuple[int, threading.Thread]:
    """Control: a server that does allow TLS 1.1, to show the client really offers it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.load_cert_chain(ca_dir / "server.pem", ca_dir / "server.key")
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    def serve() -> None:
        with sock:
            sock.settimeout(10)
            conn, _ = sock.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return port, t


def test_tls_is_on_with_a_local_ca_and_refuses_tls_1_1(
    server: tuple[ServerContext, RunningServer],
) -> None:
    ctx, running = server
    tls = ctx.settings.tls
    assert tls is not None
    assert tls.ca_cert.exists()
    assert running.url.startswith("https://")
    port = _port(running.url)

    # Control first: the same client handshakes TLS 1.1 with a server that allows it, so the
    # refusal below is the OTAGuard server's doing, not the client's.
    try:
        control_port, t = _old_tls_server(tls.cert.parent)
        assert _handshake(control_port, _client_context(ssl.TLSVersion.TLSv1_1)) == "TLSv1.1"
        t.join(5)
    except ssl.SSLError as exc:
        pytest.skip(f"this OpenSSL cannot speak TLS 1.1 at all ({exc}); nothing to refuse")

    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError):
            _handshake(port, _client_context(old))
    for good, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        assert _handshake(port, _client_context(good)) == name

    # And an HTTPS request verifying the server against the generated CA works.
    with httpx.Client(verify=tls_context(tls.ca_cert)) as http:
        r = http.get(f"{running.url}/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


class _Access(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.clients: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.args, tuple) and record.args:
            self.clients.append(str(record.args[0]))


@pytest.mark.parametrize(
    ("proxy_headers", "allowed", "expected"),
    [
        (False, None, "127.0.0.1"),  # default: a forwarded header is not trusted
        (True, "127.0.0.1", "203.0.113.7"),  # behind a proxy on loopback: it is
        (True, "192.0.2.1", "127.0.0.1"),  # proxy headers on, but not from this peer
    ],
)
def test_proxy_headers_are_trusted_only_from_allowed_proxies(
    tmp_path: Path, proxy_headers: bool, allowed: str | None, expected: str
) -> None:
    settings = ServerSettings(
        data_dir=tmp_path / "server",
        port=0,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=allowed,
    )
    ctx = ServerContext.open(settings)
    running = start_in_thread(ctx)
    access = _Access()
    logger = logging.getLogger("uvicorn.access")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(access)
    try:
        assert ctx.settings.tls is not None
        with httpx.Client(verify=tls_context(ctx.settings.tls.ca_cert)) as http:
            r = http.get(
                f"{running.url}/healthz",
                headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
            )
        assert r.status_code == 200
    finally:
        logger.removeHandler(access)
        logger.setLevel(old_level)
        running.stop()
        ctx.close()
    assert access.clients
    assert access.clients[-1].split(":")[0] == expected

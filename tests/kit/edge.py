"""Raw TLS sockets against a running server, for the edge-limit tests and the hostile-load
bench: what a hostile client sends is exactly what these write, byte for byte."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from pathlib import Path


def client_context(ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(port: int, ctx: ssl.SSLContext | None = None, timeout: float = 10.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return (ctx or client_context()).wrap_socket(raw, server_hostname="127.0.0.1")


def read_responses(sock: ssl.SSLSocket, n: int) -> list[int]:
    """The statuses of ``n`` responses in a row (Content-Length framed) on ``sock``."""
    data, statuses = b"", []
    while len(statuses) < n:
        while b"\r\n\r\n" not in data:
            chunk = _recv(sock)
            if not chunk:
                return statuses
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            (
                int(v)
                for k, _, v in (x.partition(":") for x in lines[1:])
                if k.lower() == "content-length"
            ),
            0,
        )
        while len(data) < length:
            chunk = _recv(sock)
            if not chunk:
                break
            data += chunk
        data = data[length:]
        statuses.append(int(lines[0].split(" ")[1]))
    return statuses


def read_response(sock: ssl.SSLSocket, data: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (Content-Length framed, or up to EOF) that may have begun with
    ``data``; ``(0, {}, b"")`` if the server closed without answering."""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock)
        if not chunk:
            return 0, {}, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    if "content-length" in headers:
        while len(body) < int(headers["content-length"]):
            chunk = _recv(sock)
            if not chunk:
                break
            body += chunk
    else:
        while chunk := _recv(sock):
            body += chunk
    return status, headers, body


def _recv(sock: ssl.SSLSocket) -> bytes:
    try:
        return sock.recv(65536)
    except (ConnectionError, ssl.SSLError):
        return b""


def closed_by_server(sock: ssl.SSLSocket) -> bool:
    """Whether the server has closed ``sock`` (reads end of stream); waits up to the socket's
    timeout for it."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


def get(port: int, path: str = "/healthz", headers: str = "") -> int:
    with connect(port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        return read_response(sock)[0]


def stream_header(sock: ssl.SSLSocket, total: int, chunk: int = 16 << 10) -> tuple[int, int]:
    """Send a request whose one header field is ``total`` bytes long, a chunk at a time,
    until it is all sent or the server answers; ``(bytes sent, status)`` (status 0: none)."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    block = b"a" * chunk
    sent = 0
    early = b""
    while sent < total and not (early := _ready_bytes(sock)):
        try:
            sock.sendall(block)
        except (ConnectionError, ssl.SSLError):
            break
        sent += len(block)
    return sent, read_response(sock, early)[0]


def _ready_bytes(sock: ssl.SSLSocket) -> bytes:
    """Application bytes the server has already sent, without blocking (TLS 1.3 session
    tickets make the raw socket readable with none, so select alone cannot tell)."""
    if not select.select([sock], [], [], 0)[0] and not sock.pending():
        return b""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError):
        return b""
    except (ConnectionError, ssl.SSLError):
        return b""
    finally:
        sock.settimeout(timeout)


def wait_until(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def hold_connections(port: int, n: int) -> list[ssl.SSLSocket]:
    socks = []
    for _ in range(n):
        with contextlib.suppress(OSError):
            socks.append(connect(port))
    return socks

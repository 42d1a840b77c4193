"""Running the ASGI app under uvicorn with TLS (1.2 minimum) in the foreground or a thread."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from otaguard.crypto.tls import TLSFiles, restrict_ciphers
from otaguard.errors import ConfigError
from otaguard.server.app import create_app
from otaguard.server.context import ServerContext
from otaguard.server.edge import edge_protocol
from otaguard.server.edge_limits import EdgeLimits
from otaguard.server.peercert import with_peer_certificate
from otaguard.server.tls_reload import CertificateReloader

# The interpreter's GIL hand-over interval while a server runs in the process (default 5 ms).
# The event loop thread holds the GIL between short C calls that release it (TLS reads,
# handshakes), and a thread-pool thread answering a sync route waits up to the whole interval
# for each hand-over: under a flood of TLS connections /healthz took 5-6 x its idle time with
# the server at 10 % CPU; at 0.5 ms, under 2 x (docs/BENCHMARKS.md, "Hostile load").
SWITCH_INTERVAL_S = 0.0005


def tune_interpreter() -> None:
    """Set the GIL hand-over interval for a server process (process-wide, so only where a
    server is started)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))


class EdgeServer(uvicorn.Server):
    """uvicorn's server with a bound on the TLS handshake (``EdgeLimits.handshake_timeout``;
    asyncio's default is 60 s and uvicorn does not expose it): a client that opens TCP
    connections and never finishes a handshake holds each for at most that long."""

    def __init__(self, config: uvicorn.Config, handshake_timeout: float) -> None:
        super().__init__(config)
        self.handshake_timeout = handshake_timeout

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        create_server = loop.create_server

        def bounded(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("ssl") is not None:
                kwargs.setdefault("ssl_handshake_timeout", self.handshake_timeout)
            return create_server(*args, **kwargs)

        loop.create_server = bounded  # type: ignore[method-assign]
        try:
            await super().startup(sockets)
        finally:
            del loop.create_server  # the loop's own method again


def make_server(config: uvicorn.Config, limits: EdgeLimits | None) -> EdgeServer:
    return EdgeServer(config, (limits or EdgeLimits()).handshake_timeout)


def uvicorn_config(
    app: Any,
    *,
    host: str,
    port: int,
    tls: TLSFiles,
    log_level: str = "warning",
    proxy_headers: bool = False,
    forwarded_allow_ips: str | None = None,
    client_ca: Path | None = None,
    access_log: bool = True,
    limits: EdgeLimits | None = None,
) -> uvicorn.Config:
    """The server stack every OTAGuard listener uses: uvicorn with httptools behind the edge
    limits (``server/edge.py``), TLS 1.2 minimum with AEAD suites only; behind a proxy,
    X-Forwarded-* trusted only from ``forwarded_allow_ips`` (default 127.0.0.1). With
    ``client_ca`` the handshake asks for (but does not require) a client certificate verified
    against it, and requests carry it (``server/peercert.py``)."""
    limits = limits or EdgeLimits()
    http: type[asyncio.Protocol] = edge_protocol(limits)
    mtls: dict[str, Any] = {}
    if client_ca is not None:
        mtls = {"ssl_cert_reqs": ssl.CERT_OPTIONAL, "ssl_ca_certs": str(client_ca)}
        http = with_peer_certificate(http)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
        log_level=log_level,
        access_log=access_log,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips or "127.0.0.1",
        timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]
        limit_concurrency=limits.max_concurrency,
        http=http,
        **mtls,
    )
    config.load()
    if config.ssl is None:  # pragma: no cover - uvicorn always builds it when given a cert
        raise ConfigError("uvicorn did not create a TLS context")
    config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    restrict_ciphers(config.ssl)
    return config


def _config(ctx: ServerContext, *, log_level: str = "warning") -> uvicorn.Config:
    tls = ctx.settings.tls
    if tls is None:
        raise ConfigError("server TLS material is not configured")
    return uvicorn_config(
        create_app(ctx),
        host=ctx.settings.host,
        port=ctx.settings.port,
        tls=tls,
        log_level=log_level,
        proxy_headers=ctx.settings.proxy_headers,
        forwarded_allow_ips=ctx.settings.forwarded_allow_ips,
        client_ca=ctx.device_ca.chain_path,
        access_log=ctx.settings.access_log,
        limits=ctx.settings.edge,
    )


@dataclass
class RunningServer:
    server: uvicorn.Server
    thread: threading.Thread
    url: str
    reloader: CertificateReloader | None = None

    def stop(self) -> None:
        if self.reloader is not None:
            self.reloader.stop()
        self.server.should_exit = True
        self.thread.join(timeout=15)


def reload_certificate(
    config: uvicorn.Config, tls: TLSFiles | None, **kw: bool
) -> CertificateReloader | None:
    """Reload the certificate and key into the listening context when they change."""
    if config.ssl is None or tls is None:
        return None
    return CertificateReloader(config.ssl, tls.cert, tls.key).start(**kw)


def serve_forever(ctx: ServerContext, *, log_level: str = "info") -> None:
    tune_interpreter()
    config = _config(ctx, log_level=log_level)
    reload_certificate(config, ctx.settings.tls, on_sighup=True)
    make_server(config, ctx.settings.edge).run()


def start_in_thread(ctx: ServerContext, *, timeout: float = 15.0) -> RunningServer:
    """Start the server in a daemon thread; return once it accepts connections."""
    config = _config(ctx)
    tune_interpreter()
    reloader = reload_certificate(config, ctx.settings.tls)
    server = make_server(config, ctx.settings.edge)
    thread = threading.Thread(target=server.run, name="otaguard-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError(f"server did not start on {ctx.settings.host}:{ctx.settings.port}")
        time.sleep(0.02)
    port = ctx.settings.port
    if port == 0:
        sockets = [s for srv in server.servers for s in srv.sockets]
        port = sockets[0].getsockname()[1]
    host = ctx.settings.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "127.0.0.1") else host
    return RunningServer(server, thread, f"https://{shown}:{port}", reloader)

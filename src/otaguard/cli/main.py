"""The ``otaguard`` command."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from otaguard.cli import server_options as opt
from otaguard.cli.agent import agent_app, bundle_app
from otaguard.cli.delta import delta_app
from otaguard.cli.device_identity import ca_app, device_app
from otaguard.cli.identity import audit_app, token_app, user_app
from otaguard.cli.maker import keys_app, release_app, repo_app
from otaguard.cli.manage import install as install_management
from otaguard.cli.provision import device_provision as device_provision  # registers it
from otaguard.cli.sim import sim_app
from otaguard.errors import OTAGuardError

if TYPE_CHECKING:
    from otaguard.demo import Demo
    from otaguard.fleet.anomaly import AnomalyPolicy

app = typer.Typer(
    help="OTAGuard: secure over-the-air updates for IoT fleets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(keys_app, name="keys")
app.add_typer(repo_app, name="repo")
app.add_typer(release_app, name="release")
app.add_typer(agent_app, name="agent")
app.add_typer(bundle_app, name="bundle")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.add_typer(ca_app, name="ca")
app.add_typer(device_app, name="device")
install_management(app)  # login, logout, mgmt: the management API over HTTPS
app.add_typer(delta_app, name="delta")
app.add_typer(sim_app, name="sim")
console = Console()

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="Where keys, TLS material and state are kept.")
]


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


DEMO_OPERATOR = "demo"


def _print_console_login(d: Demo) -> None:
    """Make the demo's console operator with a fresh random password and show it once, on
    the terminal only: it is stored nowhere but as its argon2 hash in the demo's database."""
    import secrets

    assert d.ctx is not None
    password = secrets.token_urlsafe(12)
    d.ctx.identity.add_user(DEMO_OPERATOR, ["admin"], password)
    console.print(
        f"web console: [bold]{d.url}/console/[/]  login [bold]{DEMO_OPERATOR}[/] / "
        f"[bold]{password}[/] (shown once; the browser must trust {d.data_dir / 'tls' / 'ca.pem'})"
    )


@app.command()
def demo(
    data_dir: DataDir = Path("otaguard-data"),
    devices: Annotated[int, typer.Option("--devices", min=1, max=5000, help="Fleet size.")] = 20,
    keep_serving: Annotated[
        bool, typer.Option("--keep-serving", help="Leave the server up afterwards (Ctrl-C ends).")
    ] = False,
    host: Annotated[str, typer.Option(help="Address the server listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Server port (0: any free port).")] = 8443,
    payload_kib: Annotated[int, typer.Option(min=1, help="Size of each image payload.")] = 256,
) -> None:
    """Sign v1 and v2, serve them, and update a simulated fleet from v1 to v2."""
    from otaguard.demo import HARDWARE, Demo

    d = Demo(data_dir, devices=devices, host=host, port=port, payload_size=payload_kib * 1024)
    started = time.monotonic()
    try:
        d.start_server()
        console.print(
            f"server up at [bold]{d.url}[/] (TLS, local CA {d.data_dir / 'tls' / 'ca.pem'})"
        )
        d.setup_repository()
        _, v1 = d.release("1.0.0")
        v2_name, _ = d.release("2.0.0", security_version=1)
        console.print(
            f"maker signed and published {HARDWARE} 1.0.0 and 2.0.0 (root 2/3, targets 2/2)"
        )
        d.provision_fleet(v1)
        dep_id = d.deploy(v2_name)
        console.print(f"deployment {dep_id}: {v2_name} to {devices} devices")
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("updating fleet", total=devices)
            runs = d.run(on_done=lambda _r: progress.advance(task))
        assert d.api is not None
        ok = _print_fleet_table(dep_id, runs, d.api.deployment_devices(dep_id))
        console.print(
            f"{sum(1 for r in runs if r.version_after == '2.0.0')}/{devices} devices on 2.0.0 "
            f"in {time.monotonic() - started:.1f}s"
        )
        if keep_serving:
            _print_console_login(d)
            console.print(
                f"serving at [bold]{d.url}[/]; admin token in {d.run_dir / 'server' / 'admin-token'}; Ctrl-C to stop"
            )
            _serve_until_stopped()
            return
        if not ok:
            raise typer.Exit(code=1)
    except OTAGuardError as exc:
        raise _fail(exc) from exc
    finally:
        d.close()


def _print_fleet_table(dep_id: int, runs: list[Any], targets: list[dict[str, Any]]) -> bool:
    """Print the demo fleet's table; True when every device reached 2.0.0 through the update."""
    statuses = {t["device_id"]: t for t in targets}
    table = Table(title=f"fleet after deployment {dep_id}")
    for col in ("device", "old version", "new version", "active slot", "result"):
        table.add_column(col)
    ok = True
    for r in runs:
        st = statuses.get(r.device_id, {})
        result = str(st.get("status", "?"))
        good = (
            result == "succeeded"
            and r.version_after == "2.0.0"
            and r.slot_after != r.slot_before
            and not r.error
        )
        ok &= good
        detail = st.get("detail") or r.error
        shown = f"{result}: {detail}" if detail else result
        table.add_row(
            r.device_id,
            str(r.version_before),
            str(r.version_after),
            str(r.slot_after),
            f"[green]{shown}[/]" if good else f"[red]{shown}[/]",
        )
    console.print(table)
    return ok


def _serve_until_stopped() -> None:
    """Block until SIGTERM or Ctrl-C (the server runs in its own thread)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass


@app.command()
def server(
    data_dir: DataDir = Path("otaguard-data/server"),
    host: opt.Host = "127.0.0.1",
    port: opt.Port = 8443,
    database: opt.DatabaseURL = None,
    proxy_headers: opt.ProxyHeaders = False,
    forwarded_allow_ips: opt.ForwardedAllowIPs = None,
    device_bearer_fallback: opt.BearerFallback = True,
    client_cert_header: opt.ClientCertHeader = None,
    client_cert_proxies: opt.ClientCertProxies = "",
    access_log: opt.AccessLog = True,
    lean_checkin: opt.LeanCheckin = True,
    revocation_refresh_seconds: opt.RevocationRefresh = 1.0,
    tls_hostname: opt.TLSHostnames = None,
    tls_cert: opt.TLSCert = None,
    tls_key: opt.TLSKey = None,
    mqtt_config: opt.MqttConfig = None,
    auth_burst_threshold: opt.AuthBurstThreshold = 20,
    download_volume_factor: opt.DownloadVolumeFactor = 3.0,
    download_volume_floor: opt.DownloadVolumeFloor = 1 << 20,
    webhook_url: opt.WebhookURLs = None,
    webhook_secret_file: opt.WebhookSecretFile = None,
) -> None:
    """Run the update server (TLS on; a local CA is generated on first run)."""
    from otaguard.crypto.tls import TLSFiles
    from otaguard.server.context import ServerContext, ServerSettings
    from otaguard.server.push_settings import PushSettings
    from otaguard.server.runner import serve_forever

    if (tls_cert is None) != (tls_key is None):
        raise _fail(OTAGuardError("--tls-cert and --tls-key go together"))
    missing = [str(p) for p in (tls_cert, tls_key) if p is not None and not p.is_file()]
    if missing:
        raise _fail(OTAGuardError(f"TLS files not found: {', '.join(missing)}"))
    supplied = TLSFiles(tls_cert, tls_cert, tls_key) if tls_cert and tls_key else None
    if bool(webhook_url) != (webhook_secret_file is not None):
        raise _fail(OTAGuardError("--webhook-url and --webhook-secret-file go together"))

    try:
        anomaly = _anomaly_policy(
            auth_burst_threshold, download_volume_factor, download_volume_floor
        )
        push = PushSettings.from_toml(mqtt_config) if mqtt_config is not None else None
        if push is not None:
            import paho.mqtt.client  # noqa: F401  (server extra: a clear message if missing)
        ctx = ServerContext.open(
            ServerSettings(
                data_dir=data_dir,
                host=host,
                port=port,
                database_url=database,
                proxy_headers=proxy_headers,
                forwarded_allow_ips=forwarded_allow_ips,
                device_bearer_fallback=device_bearer_fallback,
                client_cert_header=client_cert_header,
                client_cert_proxies=[
                    a.strip() for a in client_cert_proxies.split(",") if a.strip()
                ],
                access_log=access_log,
                lean_checkin=lean_checkin,
                revocation_refresh_seconds=revocation_refresh_seconds,
                tls=supplied,
                extra_hostnames=list(tls_hostname or []),
                mqtt=push,
                anomaly=anomaly,
                webhook_urls=list(webhook_url or []),
                webhook_secret_file=webhook_secret_file,
            )
        )
    except OTAGuardError as exc:
        raise _fail(exc) from exc
    assert ctx.settings.tls is not None
    console.print(f"OTAGuard server on https://{host}:{port}  CA: {ctx.settings.tls.ca_cert}")
    console.print(f"admin token: {data_dir / 'admin-token'}")
    try:
        serve_forever(ctx)
    finally:
        ctx.close()


def _anomaly_policy(auth_threshold: int, volume_factor: float, volume_floor: int) -> AnomalyPolicy:
    """The anomaly rules' thresholds from the command line (``PolicyError`` names each
    impossible value)."""
    from otaguard.fleet.anomaly import AnomalyPolicy, VolumePolicy

    volume = VolumePolicy(
        factor=volume_factor,
        floor_bytes=volume_floor,
        critical_factor=max(VolumePolicy().critical_factor, volume_factor),
    )
    return AnomalyPolicy(auth_threshold=auth_threshold, volume=volume)


@app.command("export-static")
def export_static_command(
    directory: Annotated[Path, typer.Argument(help="Where to write tuf/metadata and tuf/targets.")],
    data_dir: DataDir = Path("otaguard-data/server"),
    database: Annotated[
        str | None, typer.Option("--database", help="SQLAlchemy URL (default: SQLite in data dir).")
    ] = None,
) -> None:
    """Write the published TUF repository as static files for any web server or CDN."""
    from otaguard.server.context import ServerSettings
    from otaguard.server.static_export import export_static
    from otaguard.store.blobs import LocalBlobStore
    from otaguard.store.database import Store

    settings = ServerSettings(data_dir=data_dir, database_url=database)
    store = Store(settings.db_url)
    try:
        store.migrate()
        result = export_static(store, LocalBlobStore(data_dir / "blobs"), directory)
    except OTAGuardError as exc:
        raise _fail(exc) from exc
    finally:
        store.close()
    console.print(
        f"{directory}: {result.metadata} metadata files, {result.targets} target files written "
        f"({result.skipped} already there)"
    )


#: Top-level modules only the server side needs (``pip install 'otaguard[server]'``).
SERVER_MODULES = frozenset(
    {"fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "argon2", "psycopg",
     "prometheus_client", "multipart", "python_multipart", "httptools", "paho"}
)  # fmt: skip


def server_extra_missing(exc: ImportError) -> str | None:
    """The message for a command run without the server's packages, or None if ``exc`` is
    something else."""
    name = (exc.name or "").split(".")[0]
    if name not in SERVER_MODULES:
        return None
    return (
        f"this command runs the server side and needs its packages (missing: {name}); "
        "install them with: pip install 'otaguard[server]'"
    )


def main() -> None:
    try:
        app()
    except ImportError as exc:
        message = server_extra_missing(exc)
        if message is None:
            raise
        console.print("[bold red]error:[/] ", end="")
        console.print(message, markup=False)
        raise SystemExit(2) from None

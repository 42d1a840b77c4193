"""``otaguard agent run|confirm|status|install`` (on the device) and ``otaguard bundle create``.

Exit codes: 0 done; 1 the work failed (``run --once``: the cycle failed or must be retried;
``confirm``: the trial boot was not confirmed); 2 the operator's mistake (config, files), with
the message and no traceback."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from otaguard.agent.outcome import Action
from otaguard.errors import OTAGuardError

agent_app = typer.Typer(help="The device agent (runs on the device).", no_args_is_help=True)
bundle_app = typer.Typer(help="Offline update bundles (USB sticks).", no_args_is_help=True)
console = Console(stderr=True)

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Agent config (TOML).", envvar="OTAGUARD_AGENT_CONFIG"),
]
LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning, error.")]


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=code)


@agent_app.command("run")
def agent_run(
    config: ConfigOpt = Path("/etc/otaguard/agent.toml"),
    once: Annotated[bool, typer.Option("--once", help="One poll cycle, then exit.")] = False,
    log_level: LogLevel = "info",
) -> None:
    """Reconcile with the boot that just happened, then poll the server until SIGTERM."""
    from otaguard.agent.logs import json_logging

    with json_logging(log_level):
        _agent_run(config, once)


def _agent_run(config: Path, once: bool) -> None:
    from otaguard.agent.service import AgentService, load_config

    try:
        cfg, layout = load_config(config)
        service = AgentService(cfg, layout)
    except OTAGuardError as exc:
        raise _fail(exc) from exc
    previous = {
        sig: signal.signal(sig, service.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        out = service.run(once=once)
    except OTAGuardError as exc:
        raise _fail(exc, 1) from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        service.close()
    if once and out.action in (Action.FAILED, Action.RETRY):
        console.print(f"[bold red]cycle {out.action}:[/] {out.detail}")
        raise typer.Exit(code=1)


@agent_app.command("confirm")
def agent_confirm(
    config: ConfigOpt = Path("/etc/otaguard/agent.toml"),
    log_level: LogLevel = "info",
) -> None:
    """After a trial boot (otaguard-confirm.service): run the health check, then commit the
    booted slot (boot environment and anti-rollback counter), or roll back and reboot. No
    network: the reports wait in the journal for ``agent run``. Exit 0 when the boot is
    committed (or was not a trial), 1 when it was rolled back."""
    from otaguard.agent.logs import json_logging

    with json_logging(log_level):
        _agent_confirm(config)


def _agent_confirm(config: Path) -> None:
    from otaguard.agent.service import AgentService, load_config

    try:
        service = AgentService(*load_config(config))
    except OTAGuardError as exc:
        raise _fail(exc) from exc
    try:
        out = service.confirm()
        if out.reboot:
            console.print(f"[bold red]not confirmed:[/] {out.detail}")
            service.reboot(out.detail)
            raise typer.Exit(code=1)
    except OTAGuardError as exc:
        raise _fail(exc, 1) from exc
    finally:
        service.close()
    typer.echo(f"confirmed: {out.detail or 'nothing on trial'}")


@agent_app.command("status")
def agent_status(
    config: ConfigOpt = Path("/etc/otaguard/agent.toml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What the device runs and where its update stands (from the journal; no network)."""
    from otaguard.agent.service import load_config, status

    try:
        info = status(*load_config(config))
    except OTAGuardError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(info, indent=1, sort_keys=True))
        return
    running = info.get("running") or {}
    typer.echo(f"device:        {info['device_id']}")
    typer.echo(f"running:       {running.get('version')} (slot {running.get('slot')})")
    typer.echo(f"update state:  {info['state']}")
    if info.get("target"):
        typer.echo(f"target:        {info['target']} ({info['bytes_written']} bytes written)")
    if info.get("reason"):
        typer.echo(f"reason:        {info['reason']}")
    typer.echo(f"boot env:      {info.get('boot_env')}")
    typer.echo(f"security ver.: {info['security_version']}")
    typer.echo(f"unsent reports: {info['pending_reports']}")
    if info.get("error"):
        typer.echo(f"error:         {info['error']}")


@agent_app.command("install")
def agent_install(
    bundle: Annotated[Path, typer.Argument(help="Bundle file made by `otaguard bundle create`.")],
    config: ConfigOpt = Path("/etc/otaguard/agent.toml"),
    no_reboot: Annotated[
        bool, typer.Option("--no-reboot", help="Do not run the reboot command afterwards.")
    ] = False,
    log_level: LogLevel = "info",
) -> None:
    """Install from an offline bundle with the same verification as online (TUF chain from
    the device's trusted root, hardware, anti-rollback, hashes while streaming, read-back)."""
    from otaguard.agent.logs import json_logging

    with json_logging(log_level):
        _agent_install(bundle, config, no_reboot)


def _agent_install(bundle: Path, config: Path, no_reboot: bool) -> None:
    from otaguard.agent.service import load_config, open_for_bundle

    try:
        cfg, layout = load_config(config)
        service, reader = open_for_bundle(cfg, layout, bundle)
    except OTAGuardError as exc:
        raise _fail(exc) from exc
    try:
        out = service.install_bundle(reader)
        if out.reboot:
            typer.echo(f"installed: {out.detail}; reboot to boot it on trial")
            if not no_reboot:
                service.reboot(out.detail)
            return
    except OTAGuardError as exc:
        raise _fail(exc, 1) from exc
    finally:
        service.close()
        reader.close()
    raise _fail(OTAGuardError(f"bundle {out.action}: {out.detail}"), 1)


@bundle_app.command("create")
def bundle_create(
    out: Annotated[Path, typer.Argument(help="Bundle file to write.")],
    target: Annotated[str, typer.Option("--target", help="Target name, e.g. board/fw-2.img.")],
    server: Annotated[str, typer.Option("--server", help="Server base URL (https://...).")],
    ca: Annotated[Path | None, typer.Option("--ca", help="CA certificate of the server.")] = None,
    repo: Annotated[
        Path | None,
        typer.Option("--repo", help="Maker repository: start verification at its first root."),
    ] = None,
    root: Annotated[
        Path | None, typer.Option("--root", help="Trusted root.json to start verification at.")
    ] = None,
    delta_from: Annotated[
        list[str] | None,
        typer.Option(
            "--delta-from",
            metavar="SHA256",
            help="Also carry the signed delta from the image with this sha256 (what devices "
            "report in their active slot); repeatable.",
        ),
    ] = None,
) -> None:
    """Write a bundle with TARGET and its signed TUF metadata, verified on the way."""
    from otaguard.bundle.create import create_bundle
    from otaguard.repo.maker import MakerRepository

    try:
        trusted: bytes | None = None
        if root is not None:
            trusted = root.read_bytes()
        elif repo is not None:
            trusted = MakerRepository(repo).root_history()[0].read_bytes()
        manifest = create_bundle(
            server,
            target,
            out,
            trusted_root=trusted,
            ca_file=ca,
            delta_from=tuple(delta_from or ()),
        )
    except (OTAGuardError, OSError) as exc:
        raise _fail(exc) from exc
    deltas = f", deltas {', '.join(manifest.deltas)}" if manifest.deltas else ""
    typer.echo(f"wrote {out}: {manifest.target}, {len(manifest.files)} files{deltas}")

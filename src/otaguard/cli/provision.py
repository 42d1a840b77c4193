"""``otaguard device provision``: prepare a device for the agent (``agent/provision.py``).

Registered on the ``device`` command group; kept apart from the CA and enrollment commands
of ``cli/device_identity.py``. The enrollment token is read from a file or stdin (``-``),
never taken on the command line (it would show in ``ps`` and shell history)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from otaguard.cli.device_identity import device_app
from otaguard.errors import ConfigError, OTAGuardError

console = Console(stderr=True)


def read_token(source: Path) -> str:
    """The token from the file ``source``, or stdin for ``-``."""
    try:
        text = sys.stdin.read() if str(source) == "-" else source.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the enrollment token: {exc}") from exc
    if not text.strip():
        raise ConfigError("the enrollment token is empty")
    return text.strip()


def parse_slot_versions(items: list[str], option: str = "--slot-version") -> dict[str, str]:
    """``SLOT=VALUE`` items (``--slot-version a=1.0.0``, ``--slot-image a=factory.img``)."""
    out: dict[str, str] = {}
    for item in items:
        slot, sep, version = item.partition("=")
        if not sep or slot not in ("a", "b") or not version:
            raise ConfigError(f"{option} takes SLOT=VALUE (slot a or b), not {item!r}")
        out[slot] = version
    return out


@device_app.command("provision")
def device_provision(
    config: Annotated[Path, typer.Option("--config", "-c", help="The device's agent.toml.")],
    boot_slot: Annotated[
        str, typer.Option(help="Slot the factory image is in (boot env written if blank).")
    ] = "a",
    slot_version: Annotated[
        list[str] | None,
        typer.Option(help="SLOT=VERSION: the release a slot holds from the factory (repeat)."),
    ] = None,
    slot_image: Annotated[
        list[str] | None,
        typer.Option(
            help="SLOT=FILE: the factory image file a slot holds; its sha256 is recorded "
            "(checked against the slot) so the first update can be a delta (repeat)."
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="Enroll: file with the one-time enrollment token ('-': stdin)."),
    ] = None,
) -> None:
    """Prepare this device: state dir, manifest key (public key printed, to register the
    device), boot environment, what the slots hold, and (with a token) its TLS certificate."""
    from otaguard.agent.config import AgentConfig
    from otaguard.agent.layout import DeviceLayout
    from otaguard.agent.provision import provision_device

    try:
        cfg, layout = AgentConfig.from_toml(config), DeviceLayout.from_toml(config)
        token = read_token(token_file) if token_file is not None else None
        result = provision_device(
            cfg,
            layout,
            boot_slot=boot_slot,
            slot_versions=parse_slot_versions(slot_version or []),
            slot_image_files={
                k: Path(v) for k, v in parse_slot_versions(slot_image or [], "--slot-image").items()
            },
            token=token,
        )
    except OTAGuardError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    for line in result.done:
        console.print(f"done: {line}", markup=False)
    for line in result.missing:
        console.print(f"still missing: {line}", markup=False)
    if result.manifest_public_key is not None:
        typer.echo(json.dumps(result.manifest_public_key, indent=1, sort_keys=True))

"""``otaguard sim run SCENARIO``: a lightweight simulated fleet with injected faults against a
running server; prints what the rollout did and which alerts fired (``sim/light.py``).

The operator token is read from a file or ``OTAGUARD_TOKEN`` (never a command-line argument,
which other users of the host could read); the release must already be published.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import httpx
import typer

from otaguard.errors import ConfigError
from otaguard.net.tls import tls_context
from otaguard.sim.light import LightFleet, run_rollout
from otaguard.sim.scenarios import SCENARIOS, scenario

TOKEN_ENV = "OTAGUARD_TOKEN"
sim_app = typer.Typer(help="Fleet simulator with fault injection.", no_args_is_help=True)


def _token(token_file: Path | None) -> str:
    if token_file is not None:
        return token_file.read_text().strip()
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    raise ConfigError(f"an operator token is needed: --token-file or {TOKEN_ENV}")


@sim_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help=f"Scenario: {', '.join(sorted(SCENARIOS))}.")],
    server: Annotated[str, typer.Option("--server", help="Server URL.")],
    target: Annotated[str, typer.Option("--target", help="Published release to deploy.")],
    new_version: Annotated[str, typer.Option("--new-version", help="Its version.")],
    old_version: Annotated[str, typer.Option("--old-version")] = "1.0.0",
    hardware: Annotated[str, typer.Option("--hardware")] = "sim-board",
    devices: Annotated[int, typer.Option("--devices", min=1, max=100_000)] = 200,
    max_rounds: Annotated[int, typer.Option("--max-rounds", min=1)] = 12,
    token_file: Annotated[Path | None, typer.Option("--token-file")] = None,
    ca: Annotated[Path | None, typer.Option("--ca", help="CA certificate of the server.")] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Device id prefix.")] = "light",
) -> None:
    """Enroll the scenario's devices, deploy TARGET with a 10/50/100 % plan, run rounds."""
    plan = scenario(name, devices=devices)
    headers = {"Authorization": f"Bearer {_token(token_file)}"}
    verify = tls_context(ca) if ca else True
    with httpx.Client(base_url=server, headers=headers, verify=verify, timeout=60) as api:
        fleet = LightFleet(api, plan, hardware=hardware)
        fleet.enroll(old_version, prefix=prefix)
        result = run_rollout(
            fleet, target_name=target, new_version=new_version, max_rounds=max_rounds
        )
    typer.echo(result.summary())

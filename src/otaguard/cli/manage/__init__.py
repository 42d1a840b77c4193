"""``otaguard login|logout`` and ``otaguard mgmt ...``: the operator's management CLI.

Runs on an operator's workstation and talks to a server over HTTPS only (``fleet_client``),
with a token from ``otaguard login`` or ``OTAGUARD_TOKEN``; it opens no database and holds no
signing key. (``otaguard user|token|audit`` work on the server host, against its database.)
One module per resource; ``install`` adds them to the ``otaguard`` command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from otaguard.cli.manage.audit import audit_app
from otaguard.cli.manage.deployments import deployments_app
from otaguard.cli.manage.devices import devices_app
from otaguard.cli.manage.dynamic_groups import dynamic_groups_app
from otaguard.cli.manage.groups import groups_app
from otaguard.cli.manage.releases import releases_app
from otaguard.cli.manage.rollouts import alerts_app, change_password
from otaguard.cli.manage.runtime import Selection
from otaguard.cli.manage.session import context_app, login, logout
from otaguard.cli.manage.tokens import tokens_app
from otaguard.cli.manage.users import users_app

mgmt_app = typer.Typer(
    help="Manage a fleet through a server's API (after `otaguard login`).",
    no_args_is_help=True,
)


@mgmt_app.callback()
def _select(
    ctx: typer.Context,
    context: Annotated[
        str | None,
        typer.Option("--context", "-c", help="Which login to use (default: the current one)."),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server", help="Server URL, overriding the context's (with OTAGUARD_TOKEN)."
        ),
    ] = None,
) -> None:
    ctx.obj = Selection(context=context, server=server)


for _name, _app in (
    ("devices", devices_app),
    ("groups", groups_app),
    ("dynamic-groups", dynamic_groups_app),
    ("releases", releases_app),
    ("deployments", deployments_app),
    ("audit", audit_app),
    ("users", users_app),
    ("tokens", tokens_app),
    ("alerts", alerts_app),
    ("context", context_app),
):
    mgmt_app.add_typer(_app, name=_name)
mgmt_app.command("password")(change_password)


def install(app: typer.Typer) -> None:
    """Add ``login``, ``logout`` and ``mgmt`` to the ``otaguard`` command."""
    app.command("login")(login)
    app.command("logout")(logout)
    app.add_typer(mgmt_app, name="mgmt")

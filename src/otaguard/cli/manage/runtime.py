"""What every ``otaguard mgmt`` command shares: the options of the ``mgmt`` group, a client for
the chosen server, and one way of failing (one line on standard error, exit 2)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, NoReturn

import httpx
import typer

from otaguard.cli.manage import credentials
from otaguard.cli.manage.messages import explain
from otaguard.cli.manage.output import err
from otaguard.errors import ApiError, OTAGuardError
from otaguard.fleet_client import GroupClient

#: exit status of every refused or failed command (as the other ``otaguard`` commands)
EXIT_FAILED = 2

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the server's reply as JSON (for programs).")
]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=1000, help="Page size.")]
OffsetOpt = Annotated[int, typer.Option("--offset", min=0, help="Skip this many first.")]


@dataclass(frozen=True)
class Selection:
    """The ``mgmt`` group's options: which context (login) and, optionally, which server."""

    context: str | None = None
    server: str | None = None


def selection(ctx: typer.Context) -> Selection:
    """The group's options (click hands a parent's ``obj`` down to its subcommands)."""
    return ctx.obj if isinstance(ctx.obj, Selection) else Selection()


def fail(message: str) -> NoReturn:
    err.print(f"error: {' '.join(message.split())}", markup=False, highlight=False)
    raise typer.Exit(code=EXIT_FAILED)


@contextmanager
def failures(context: str | None = None) -> Iterator[None]:
    """Expected failures as one line naming the cause; the token never appears in them."""
    try:
        yield
    except ApiError as exc:
        detail = str(exc).split(": ", 1)[-1]
        fail(explain(exc.status, detail, context=context))
    except httpx.HTTPError as exc:
        fail(f"cannot reach the server: {type(exc).__name__}: {exc}")
    except OTAGuardError as exc:
        fail(str(exc))
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        fail(f"{exc.strerror or exc}{where}")


@contextmanager
def client(ctx: typer.Context) -> Iterator[GroupClient]:
    """A client for the selected server with the stored (or ``OTAGUARD_TOKEN``) token; errors
    inside the block become one-line failures."""
    sel = selection(ctx)
    env = dict(os.environ)
    with failures(sel.context):
        config = credentials.load(credentials.config_path(env))
        target = credentials.resolve(
            config, env, context=sel.context, server=sel.server, now=dt.datetime.now(dt.UTC)
        )
        api = GroupClient(target.server, target.token, target.ca)
    try:
        with failures(target.context):
            yield api
    finally:
        api.close()

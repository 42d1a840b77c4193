"""``otaguard mgmt tokens``: your own API tokens on the server (for scripts and CI), scoped to
some actions and expiring."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from otaguard.cli.manage.output import as_json, note, table
from otaguard.cli.manage.runtime import JsonOpt, client
from otaguard.cli.manage.secrets import emit_secret

tokens_app = typer.Typer(help="Your API tokens: create, list, revoke.", no_args_is_help=True)


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Your tokens (never their values: the server keeps only hashes)."""
    with client(ctx) as api:
        tokens = api.tokens()
    if json:
        as_json(tokens)
        return
    cols = [("id", "id"), ("scopes", "scopes"), ("label", "label")]
    table(tokens, [*cols, ("expires", "expires_at"), ("revoked", "revoked")])


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", "-s", help="An action name, or '*' (default).")
    ] = None,
    ttl_days: Annotated[int, typer.Option("--ttl-days", min=1, max=365)] = 30,
    label: Annotated[str, typer.Option("--label")] = "",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the token to this file (0600).")
    ] = None,
) -> None:
    """A new token for you; printed once on standard output, or written to --out."""
    with client(ctx) as api:
        issued = api.create_token(scope or ["*"], ttl_days * 86400, label)
        emit_secret(issued["token"], out, f"token {issued['id']}, expires {issued['expires_at']}")


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, token_id: str) -> None:
    """Revoke one of your tokens by its id (``tokens list``)."""
    with client(ctx) as api:
        api.revoke_token(token_id)
    note(f"token {token_id} revoked")

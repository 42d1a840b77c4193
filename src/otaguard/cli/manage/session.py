"""``otaguard login|logout`` and ``otaguard mgmt context``: getting a token once and keeping it.

The password is prompted for (or read from standard input), sent only in the login request's
body, and forgotten; the token the server returns goes into the credentials file (0600) and is
never printed. ``logout`` revokes a token that ``login`` obtained and forgets it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from otaguard.cli.manage import credentials
from otaguard.cli.manage.output import as_json, note, table
from otaguard.cli.manage.runtime import JsonOpt, fail, failures
from otaguard.errors import ApiError
from otaguard.fleet_client import FleetClient
from otaguard.fleet_client import login as password_login

context_app = typer.Typer(help="Logins to several servers (contexts).", no_args_is_help=True)

ContextOpt = Annotated[
    str | None,
    typer.Option("--context", "-c", help="Name of the login (default: host:port of --server)."),
]


def _config() -> tuple[Path, dict[str, Any]]:
    path = credentials.config_path(os.environ)
    return path, credentials.load(path)


def _read_token(token_file: Path | None, token_stdin: bool) -> str | None:
    if token_file is not None:
        token = token_file.read_text().strip()
    elif token_stdin:
        token = sys.stdin.readline().strip()
    else:
        return None
    if not token:
        fail("the token given is empty")
    return token


def _check_token(server: str, ca: Path | None, token: str) -> str | None:
    """Does ``token`` authenticate? Returns its user's name when the server says it."""
    api = FleetClient(server, token, ca)
    try:
        mine = api.tokens()
    except ApiError as exc:
        if exc.status != 403:  # 403: authenticated, just not scoped to list tokens
            raise
        return None
    finally:
        api.close()
    return str(mine[0]["user"]) if mine else None


def login(
    server: Annotated[
        str | None,
        typer.Option("--server", "-s", help="https://host:port (default: the context's)."),
    ] = None,
    ca: Annotated[
        Path | None, typer.Option("--ca", help="CA certificate of the server (PEM).")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Operator name.")] = None,
    context: ContextOpt = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="Store this API token instead.")
    ] = None,
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="Read an API token from standard input.")
    ] = False,
) -> None:
    """Log in to a management server; the token is kept in your credentials file (0600)."""
    with failures(context):
        path, config = _config()
        if server is None:
            name, server, ca, user = _known_server(config, context, ca, user)
        else:
            name = context or credentials.default_context_name(server)
        token = _read_token(token_file, token_stdin)
        try:
            if token is not None:
                who = _check_token(server, ca, token) or user
                fields: dict[str, Any] = {"token": token, "user": who}
            else:
                who = user or typer.prompt("user", err=True)
                reply = password_login(server, who, _password(password_stdin), ca)
                fields = {"token": reply["token"], "token_id": reply["id"], "user": who}
                fields["expires_at"] = reply["expires_at"]
        except ApiError as exc:
            if exc.status != 401:
                raise
            fail(f"login refused: {str(exc).split(': ', 1)[-1]}")
        credentials.save(path, credentials.with_login(config, name, server, ca, **fields))
        _revoke_replaced(config.get("contexts", {}).get(name), fields["token"])
    expiry = f", token expires {fields['expires_at']}" if fields.get("expires_at") else ""
    note(f"logged in to {server} as {who or 'token holder'} (context {name}{expiry})")


def _revoke_replaced(old: dict[str, Any] | None, new_token: str) -> None:
    """A login over an earlier one: revoke the earlier token if a login obtained it (so it
    does not stay valid, unused, until it expires)."""
    if old and old.get("token_id") and old.get("token") and old["token"] != new_token:
        _revoke_quietly(old)


def _known_server(
    config: dict[str, Any], context: str | None, ca: Path | None, user: str | None
) -> tuple[str, str, Path | None, str | None]:
    """Name, server, CA and user of an existing context, for ``login`` without ``--server``."""
    name = credentials.context_name(config, os.environ, context)
    known = config.get("contexts", {}).get(name)
    if known is None:
        fail(f"no context {name!r}: give --server")
    stored_ca = Path(known["ca"]) if known.get("ca") else None
    return name, str(known["server"]), ca or stored_ca, user or known.get("user")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, err=True)
    if not password:
        fail("empty password")
    return str(password)


def logout(context: ContextOpt = None) -> None:
    """Forget the token of a context (the current one); a token from ``login`` is revoked."""
    with failures(context):
        path, config = _config()
        name = credentials.context_name(config, os.environ, context)
        entry = config.get("contexts", {}).get(name)
        if entry is None or not entry.get("token"):
            fail(f"not logged in to {name!r}")
        revoked = _revoke_quietly(entry) if entry.get("token_id") else "kept on the server"
        credentials.save(path, credentials.without_token(config, name))
    note(f"logged out of {entry['server']} (context {name}; token {revoked})")


def _revoke_quietly(entry: dict[str, Any]) -> str:
    """Revoke the login's token; an unreachable server or an expired token does not stop the
    logout (the local copy is removed either way)."""
    ca = Path(entry["ca"]) if entry.get("ca") else None
    api = FleetClient(entry["server"], entry["token"], ca)
    try:
        api.revoke_token(str(entry["token_id"]))
    except (ApiError, OSError) as exc:
        return f"not revoked: {exc}"
    except Exception as exc:  # httpx errors: the server may be gone for good
        return f"not revoked: {type(exc).__name__}"
    finally:
        api.close()
    return "revoked"


@context_app.command("list")
def context_list(json: JsonOpt = False) -> None:
    """Your logins: server, user, whether a token is held, and which is current."""
    with failures():
        _path, config = _config()
    current = config.get("current")
    items = [
        {
            "name": name,
            "current": name == current,
            "server": entry.get("server"),
            "user": entry.get("user"),
            "logged_in": bool(entry.get("token")),
            "expires_at": entry.get("expires_at"),
        }
        for name, entry in sorted(config.get("contexts", {}).items())
    ]
    if json:
        as_json(items)
        return
    cols = [("", "current"), ("context", "name"), ("server", "server"), ("user", "user")]
    table(items, [*cols, ("logged in", "logged_in"), ("expires", "expires_at")])


@context_app.command("use")
def context_use(name: str) -> None:
    """Make ``name`` the current context."""
    with failures():
        path, config = _config()
        if name not in config.get("contexts", {}):
            fail(f"no context {name!r}")
        credentials.save(path, {**config, "current": name})
    note(f"current context: {name}")

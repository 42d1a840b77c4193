"""``otaguard mgmt users``: operators and their roles, through the server (admins)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from otaguard.cli.manage.output import as_json, note, table
from otaguard.cli.manage.runtime import JsonOpt, client, fail

users_app = typer.Typer(help="Operators and their roles (admins).", no_args_is_help=True)

RoleOpt = Annotated[
    list[str],
    typer.Option("--role", "-r", help="viewer, release_manager, deployer, approver, admin."),
]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]
USER_COLUMNS = [
    ("user", "name"),
    ("roles", "roles"),
    ("password", "has_password"),
    ("locked until", "locked_until"),
    ("disabled", "disabled"),
]


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("new password", hide_input=True, confirmation_prompt=True, err=True)
    if not password:
        fail("empty password")
    return str(password)


@users_app.command("list")
def users_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Every operator with roles and lock-out state."""
    with client(ctx) as api:
        users = api.users()
    if json:
        as_json(users)
        return
    table(users, USER_COLUMNS)


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    name: str,
    role: RoleOpt,
    password_stdin: PasswordStdin = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="Token-only user (no password login).")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Add an operator (the password is prompted for, twice)."""
    password = None if no_password else _new_password(password_stdin)
    with client(ctx) as api:
        u = api.add_user(name, role, password)
    if json:
        as_json(u)
        return
    note(f"user {u['name']}: {', '.join(u['roles'])}")


@users_app.command("role")
def users_role(ctx: typer.Context, name: str, role: RoleOpt, json: JsonOpt = False) -> None:
    """Replace an operator's roles."""
    with client(ctx) as api:
        u = api.set_user_roles(name, role)
    if json:
        as_json(u)
        return
    note(f"user {u['name']}: {', '.join(u['roles']) or '(no role)'}")


@users_app.command("passwd")
def users_passwd(
    ctx: typer.Context, name: str, password_stdin: PasswordStdin = False, json: JsonOpt = False
) -> None:
    """Set an operator's password (also lifts a lock-out)."""
    password = _new_password(password_stdin)
    with client(ctx) as api:
        u = api.set_user_password(name, password)
    if json:
        as_json(u)
        return
    note(f"password of {u['name']} set")

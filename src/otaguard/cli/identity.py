"""``otaguard user|token|audit`` (on the server host, against its database) and, for devices and
the device CA, ``otaguard device|ca``.

Server-side commands open the server's database directly (``--data-dir``/``--database`` as for
``otaguard server``) and write what they do to the audit log as ``cli:<login name>``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from otaguard.errors import OTAGuardError
from otaguard.identity.audit import verify_chain

if TYPE_CHECKING:  # imported where used: the agent shares this CLI and needs no database
    from otaguard.identity.store import IdentityStore

user_app = typer.Typer(help="Operators and their roles (server host).", no_args_is_help=True)
token_app = typer.Typer(help="Scoped, expiring API tokens (server host).", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log (server host).", no_args_is_help=True)
console = Console(stderr=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="The server's data directory.")]
Database = Annotated[
    str | None, typer.Option("--database", help="SQLAlchemy URL (default: SQLite in data dir).")
]


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=code)


def local_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # pragma: no cover - no login name
        return "cli:unknown"


@contextmanager
def _identity(data_dir: Path, database: str | None) -> Iterator[IdentityStore]:
    from otaguard.identity.store import IdentityStore
    from otaguard.server.context import ServerSettings
    from otaguard.store.database import Store

    store = Store(ServerSettings(data_dir=data_dir, database_url=database).db_url)
    try:
        store.migrate()
        yield IdentityStore(store)
    except OTAGuardError as exc:
        raise _fail(exc) from exc
    finally:
        store.close()


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise _fail(ValueError("passwords differ"))
    return first


RoleOpt = Annotated[
    list[str],
    typer.Option("--role", "-r", help="viewer, release_manager, deployer, approver, admin."),
]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


@user_app.command("add")
def user_add(
    name: str,
    role: RoleOpt,
    password_stdin: PasswordStdin = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="Token-only user (no password login).")
    ] = False,
    data_dir: DataDir = Path("otaguard-data/server"),
    database: Database = None,
) -> None:
    """Add an operator with roles (and a password, hashed with argon2id)."""
    password = None if no_password else _password(password_stdin)
    with _identity(data_dir, database) as ident:
        u = ident.add_user(name, role, password)
        ident.audit(actor=local_actor(), action="user.add", target=name, detail={"roles": u.roles})
    console.print(f"user {name}: {', '.join(u.roles)}")


@user_app.command("passwd")
def user_passwd(
    name: str,
    password_stdin: PasswordStdin = False,
    data_dir: DataDir = Path("otaguard-data/server"),
    database: Database = None,
) -> None:
    """Set an operator's password (also lifts a lock-out)."""
    password = _password(password_stdin)
    with _identity(data_dir, database) as ident:
        ident.set_password(name, password)
        ident.audit(actor=local_actor(), action="user.passwd", target=name)
    console.print(f"password of {name} set")


@user_app.command("role")
def user_role(
    name: str,
    role: RoleOpt,
    data_dir: DataDir = Path("otaguard-data/server"),
    database: Database = None,
) -> None:
    """Replace an operator's roles."""
    with _identity(data_dir, database) as ident:
        u = ident.set_roles(name, role)
        ident.audit(actor=local_actor(), action="user.role", target=name, detail={"roles": u.roles})
    console.print(f"user {name}: {', '.join(u.roles)}")


@user_app.command("list")
def user_list(data_dir: DataDir = Path("otaguard-data/server"), database: Database = None) -> None:
    with _identity(data_dir, database) as ident:
        for u in ident.list_users():
            typer.echo(f"{u.name}\t{','.join(u.roles)}\t{'locked' if u.locked_until else ''}")


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", "-u", help="Whose token.")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", "-s", help="An action name, or '*' (default).")
    ] = None,
    ttl_days: Annotated[int, typer.Option("--ttl-days", min=1, max=365)] = 30,
    label: Annotated[str, typer.Option("--label")] = "",
    data_dir: DataDir = Path("otaguard-data/server"),
    database: Database = None,
) -> None:
    """Create an API token; prints it once on standard output."""
    with _identity(data_dir, database) as ident:
        issued = ident.create_token(
            user, scopes=scope or ["*"], ttl=dt.timedelta(days=ttl_days), label=label
        )
        ident.audit(
            actor=local_actor(),
            action="token.create",
            target=user,
            detail={"token": issued.id, "scopes": scope or ["*"], "ttl_days": ttl_days},
        )
    console.print(f"token {issued.id} for {user}, expires {issued.expires_at:%Y-%m-%d %H:%M} UTC")
    typer.echo(issued.token)


@token_app.command("revoke")
def token_revoke(
    token_id: str,
    data_dir: DataDir = Path("otaguard-data/server"),
    database: Database = None,
) -> None:
    """Revoke an API token by its id (``token list``)."""
    with _identity(data_dir, database) as ident:
        ident.revoke_token(token_id)
        ident.audit(actor=local_actor(), action="token.revoke", target=token_id)
    console.print(f"token {token_id} revoked")


@token_app.command("list")
def token_list(
    user: Annotated[str | None, typer.Option("--user", "-u")] = None,
    data_dir: DataDir = Path("otaguard-data/server"),
    database: Database = None,
) -> None:
    with _identity(data_dir, database) as ident:
        for t in ident.list_tokens(user):
            state = "revoked" if t.revoked else f"expires {t.expires_at:%Y-%m-%d}"
            typer.echo(f"{t.id}\t{t.user}\t{','.join(t.scopes)}\t{state}\t{t.label}")


@audit_app.command("export")
def audit_export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File (default: stdout).")] = None,
    data_dir: DataDir = Path("otaguard-data/server"),
    database: Database = None,
) -> None:
    """Write the audit log as JSON lines (one entry per line, in order)."""
    with _identity(data_dir, database) as ident:
        fh = open(out, "w") if out else sys.stdout  # noqa: SIM115
        try:
            n = 0
            for e in ident.audit_entries():
                fh.write(e.to_json() + "\n")
                n += 1
        finally:
            if out:
                fh.close()
    console.print(f"{n} audit entries exported")


@audit_app.command("verify")
def audit_verify(
    jsonl: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Verify an exported JSON-lines file instead."),
    ] = None,
    expect_head: Annotated[
        str | None,
        typer.Option("--expect-head", help="Hash the last entry must have (detects truncation)."),
    ] = None,
    data_dir: DataDir = Path("otaguard-data/server"),
    database: Database = None,
) -> None:
    """Check the hash chain: exits 1 naming each edited, deleted or reordered entry."""
    from otaguard.identity.audit import AuditEntry

    if jsonl is not None:
        try:
            entries = [
                AuditEntry.from_dict(json.loads(line))
                for line in jsonl.read_text().splitlines()
                if line.strip()
            ]
        except (OSError, ValueError, KeyError) as exc:
            raise _fail(exc) from exc
        problems = verify_chain(entries, expected_head=expect_head)
    else:
        with _identity(data_dir, database) as ident:
            entries = list(ident.audit_entries())
            problems = verify_chain(entries, expected_head=expect_head)
    for p in problems:
        console.print(f"[red]entry {p.seq}:[/] {p.problem}")
    if problems:
        raise typer.Exit(code=1)
    head = entries[-1].hash if entries else "(empty)"
    console.print(f"audit log intact: {len(entries)} entries, head {head}")
    typer.echo(head)

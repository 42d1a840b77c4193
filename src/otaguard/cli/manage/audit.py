"""``otaguard mgmt audit``: read, export and check the server's hash-chained audit log.

``export`` writes the same JSON lines as ``otaguard audit export`` on the server host, so
``otaguard audit verify --file`` checks either. ``verify`` checks the chain the server serves:
each entry's hash and link; with ``--expect-head`` (a head hash kept from an earlier check) it
also catches a log cut short or rewritten from an earlier point.
"""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path
from typing import Annotated

import typer

from otaguard.cli.manage.output import as_json, note, table
from otaguard.cli.manage.runtime import JsonOpt, client
from otaguard.identity.audit import AuditEntry, verify_chain

audit_app = typer.Typer(help="The server's audit log: list, export, verify.", no_args_is_help=True)

AUDIT_COLUMNS = [
    ("seq", "seq"),
    ("at", "at"),
    ("actor", "actor"),
    ("action", "action"),
    ("target", "target"),
    ("outcome", "outcome"),
]


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    after: Annotated[int, typer.Option(min=0, help="Entries after this sequence number.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many.")] = 100,
    tail: Annotated[
        int | None, typer.Option(min=1, max=10000, help="Only the latest N entries.")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Audit entries in order (``--tail N``: the latest N)."""
    with client(ctx) as api:
        if tail is not None:
            entries = list(deque(api.audit_all(after=after), maxlen=tail))
        else:
            entries = api.audit(after=after, limit=limit)
    if json:
        as_json(entries)
        return
    table(entries, AUDIT_COLUMNS)
    if tail is None and len(entries) == limit:
        note(f"more: --after {entries[-1]['seq']}")


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File (default: stdout).")] = None,
) -> None:
    """The whole audit log as JSON lines, one entry per line, in order."""
    with client(ctx) as api:
        fh = open(out, "x") if out else sys.stdout  # noqa: SIM115 - "x": never overwrite
        try:
            n = 0
            for d in api.audit_all():
                fh.write(AuditEntry.from_dict(d).to_json() + "\n")
                n += 1
        finally:
            if out:
                fh.close()
    note(f"{n} audit entries exported")


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    expect_head: Annotated[
        str | None,
        typer.Option("--expect-head", help="Hash the last entry must have (detects truncation)."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Check the served chain; exits 1 naming each edited, deleted or reordered entry."""
    with client(ctx) as api:
        entries = [AuditEntry.from_dict(d) for d in api.audit_all()]
    problems = verify_chain(entries, expected_head=expect_head)
    head = entries[-1].hash if entries else None
    if json:
        report = [{"seq": p.seq, "problem": p.problem} for p in problems]
        as_json({"entries": len(entries), "head": head, "problems": report})
    else:
        for p in problems:
            note(f"entry {p.seq}: {p.problem}")
    if problems:
        raise typer.Exit(code=1)
    if not json:
        note(f"audit log intact: {len(entries)} entries, head {head or '(empty)'}")
        print(head or "")

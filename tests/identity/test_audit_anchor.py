"""The audit log against a database administrator (issue 11 item 7): rewriting a row and
recomputing every hash after it passed ``otaguard audit verify``; now each entry carries a
MAC under a key outside the database, and verify names the first bad entry and why."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import delete, update
from typer.testing import CliRunner

from otaguard.cli.main import app as cli
from otaguard.identity import audit as chain
from otaguard.identity.store import IdentityStore
from otaguard.server.context import AUDIT_KEY_FILE, audit_key
from otaguard.store.database import Store
from otaguard.store.identity_models import AuditRecord

runner = CliRunner()


def _server(tmp_path: Path, n: int = 6) -> tuple[Path, IdentityStore]:
    data = tmp_path / "server"
    data.mkdir(parents=True)
    store = Store(f"sqlite:///{data / 'server.db'}")
    store.migrate()
    ident = IdentityStore(store, audit_key=audit_key(data))
    for i in range(n):
        ident.audit(actor="user:alice", action="deployment.create", target=str(i))
    return data, ident


def _verify(data: Path, *extra: str) -> tuple[int, str]:
    r = runner.invoke(cli, ["audit", "verify", "--data-dir", str(data), *extra])
    return r.exit_code, r.output


def _rewrite_from(ident: IdentityStore, seq: int, outcome: str) -> None:
    """What a database administrator can do: edit entry ``seq`` and recompute every hash
    after it (without the MAC key: the old MACs stay, or are recomputed with a guess)."""
    entries = list(ident.audit_entries())
    prev = entries[seq - 2] if seq > 1 else None
    with ident.store.session() as s:
        for e in entries[seq - 1 :]:
            changed = chain.chain(
                prev,
                at=e.at,
                actor=e.actor,
                action=e.action,
                target=e.target,
                outcome=outcome if e.seq == seq else e.outcome,
                detail=e.detail,
            )
            s.execute(
                update(AuditRecord)
                .where(AuditRecord.seq == e.seq)
                .values(outcome=changed.outcome, prev_hash=changed.prev_hash, hash=changed.hash)
            )
            prev = changed


def test_the_key_is_a_private_file_outside_the_database(tmp_path: Path) -> None:
    data, ident = _server(tmp_path, 1)
    mode = stat.S_IMODE(os.stat(data / AUDIT_KEY_FILE).st_mode)
    assert mode == 0o600
    (entry,) = ident.audit_entries()
    assert entry.mac
    assert audit_key(data).decode() not in (data / "server.db").read_bytes().decode("latin-1")


def test_rewritten_and_rehashed_row_is_caught_by_its_mac(tmp_path: Path) -> None:
    data, ident = _server(tmp_path)
    assert _verify(data)[0] == 0
    _rewrite_from(ident, 3, "denied")
    entries = list(ident.audit_entries())
    assert chain.verify_chain(entries) == []  # control: the bare hash chain is fooled
    code, out = _verify(data)
    assert code == 1
    assert "entry 3: MAC wrong" in out


def test_content_change_link_break_and_missing_mac_are_named(tmp_path: Path) -> None:
    data, ident = _server(tmp_path)
    with ident.store.session() as s:
        s.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(actor="user:mallory"))
        s.execute(update(AuditRecord).where(AuditRecord.seq == 4).values(prev_hash="0" * 64))
        s.execute(update(AuditRecord).where(AuditRecord.seq == 6).values(mac=None))
    code, out = _verify(data)
    assert code == 1
    assert "entry 2: content changed" in out
    assert "entry 4: link broken" in out
    assert "entry 6: MAC missing" in out


def test_expect_head_names_the_real_cause(tmp_path: Path) -> None:
    data, ident = _server(tmp_path)
    head = _verify(data)[1].strip().splitlines()[-1]
    ident.audit(actor="system", action="x")  # appended since: said so, not "removed"
    code, out = _verify(data, "--expect-head", head)
    assert code == 1
    assert "recorded head is entry 6: 1 entries were appended" in out
    with ident.store.session() as s:
        s.execute(delete(AuditRecord).where(AuditRecord.seq >= 6))
    code, out = _verify(data, "--expect-head", head)
    assert "not in the chain" in out

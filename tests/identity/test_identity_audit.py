"""The hash-chained audit log: appends, and ``otaguard audit verify`` catching an edited,
deleted or reordered entry (in the database and in an exported JSON-lines file)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import delete, update
from typer.testing import CliRunner

from otaguard.cli.main import app as cli
from otaguard.identity.audit import AuditEntry, chain, verify_chain
from otaguard.identity.store import IdentityStore
from otaguard.store.database import Store
from otaguard.store.identity_models import AuditRecord

runner = CliRunner()


def _entries(n: int) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    for i in range(n):
        out.append(
            chain(
                out[-1] if out else None,
                at=f"2030-01-01T00:00:{i:02d}+00:00",
                actor="user:alice",
                action="deployment.create",
                target=f"POST /api/v1/deployments#{i}",
                outcome="ok",
                detail={"n": i},
            )
        )
    return out


def test_intact_chain_verifies() -> None:
    es = _entries(5)
    assert verify_chain(es) == []
    assert verify_chain(es, expected_head=es[-1].hash) == []
    assert [e.seq for e in es] == [1, 2, 3, 4, 5]
    assert es[1].prev_hash == es[0].hash


def test_edit_delete_reorder_and_truncation_are_each_detected() -> None:
    es = _entries(5)
    edited = [*es[:2], AuditEntry(**{**es[2].__dict__, "actor": "user:mallory"}), *es[3:]]
    assert [(p.seq, "edited" in p.problem) for p in verify_chain(edited)] == [(3, True)]
    deleted = es[:2] + es[3:]
    assert {p.seq for p in verify_chain(deleted)} == {4}
    reordered = [es[0], es[2], es[1], es[3], es[4]]
    assert verify_chain(reordered)
    truncated = es[:4]
    assert verify_chain(truncated) == []  # the chain alone cannot see a cut tail...
    assert verify_chain(truncated, expected_head=es[-1].hash)  # ...the recorded head does
    # re-hashing an edited entry does not help: the next one no longer links to it
    forged = AuditEntry(**{**es[2].__dict__, "outcome": "denied"})
    forged = chain(
        es[1],
        **{k: getattr(forged, k) for k in ("at", "actor", "action", "target", "outcome", "detail")},
    )
    assert {p.seq for p in verify_chain([*es[:2], forged, *es[3:]])} == {4}


def _server_db(tmp_path: Path, n: int = 6) -> tuple[Path, IdentityStore]:
    data = tmp_path / "server"
    data.mkdir(parents=True)
    store = Store(f"sqlite:///{data / 'server.db'}")
    store.migrate()
    ident = IdentityStore(store)
    for i in range(n):
        ident.audit(actor="user:alice", action="deployment.create", target=str(i), detail={"i": i})
    return data, ident


def _verify(data: Path, *extra: str) -> tuple[int, str]:
    r = runner.invoke(cli, ["audit", "verify", "--data-dir", str(data), *extra])
    return r.exit_code, r.output


def test_cli_verify_catches_tampering_in_the_database(tmp_path: Path) -> None:
    data, ident = _server_db(tmp_path)
    code, out = _verify(data)
    assert code == 0, out
    assert len(out.strip().splitlines()[-1]) == 64  # the head hash, for the record
    with ident.store.session() as s:  # someone with database access edits entry 3
        s.execute(update(AuditRecord).where(AuditRecord.seq == 3).values(outcome="denied"))
    code, out = _verify(data)
    assert code == 1
    assert "entry 3" in out
    assert "edited" in out
    with ident.store.session() as s:  # put it back, then delete entry 4
        s.execute(update(AuditRecord).where(AuditRecord.seq == 3).values(outcome="ok"))
        s.execute(delete(AuditRecord).where(AuditRecord.seq == 4))
    code, out = _verify(data)
    assert code == 1
    assert "entry 5" in out
    assert "sequence 5 where 4 was expected" in out
    # truncating the tail is caught against the head recorded earlier
    data2, ident2 = _server_db(tmp_path / "b")
    code, out = _verify(data2)
    head2 = out.strip().splitlines()[-1]
    with ident2.store.session() as s:
        s.execute(delete(AuditRecord).where(AuditRecord.seq == 6))
    assert _verify(data2)[0] == 0
    code, out = _verify(data2, "--expect-head", head2)
    assert code == 1
    assert "head" in out


def test_cli_export_is_json_lines_and_verify_catches_reordering(tmp_path: Path) -> None:
    data, _ = _server_db(tmp_path, n=4)
    out = tmp_path / "audit.jsonl"
    r = runner.invoke(cli, ["audit", "export", "--data-dir", str(data), "--out", str(out)])
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    assert len(lines) == 4
    rows = [json.loads(line) for line in lines]
    assert [row["seq"] for row in rows] == [1, 2, 3, 4]
    assert set(rows[0]) == {
        "seq",
        "at",
        "actor",
        "action",
        "target",
        "outcome",
        "detail",
        "prev_hash",
        "hash",
        "mac",
    }
    assert _verify(data, "--file", str(out))[0] == 0
    rows[1], rows[2] = rows[2], rows[1]
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, text = _verify(data, "--file", str(out))
    assert code == 1
    assert "entry 3" in text


def test_cli_user_and_token_commands_are_audited(tmp_path: Path) -> None:
    data, ident = _server_db(tmp_path, n=0)
    r = runner.invoke(
        cli,
        ["user", "add", "erin", "--role", "deployer", "--password-stdin", "--data-dir", str(data)],
        input="a long enough passphrase\n",
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["user", "role", "erin", "-r", "viewer", "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        cli, ["token", "create", "--user", "erin", "-s", "release.read", "--data-dir", str(data)]
    )
    assert r.exit_code == 0, r.output
    token = r.output.strip().splitlines()[-1]
    principal = ident.authenticate(token)
    assert principal.name == "erin"
    assert principal.scopes == {"release.read"}
    assert [str(x) for x in principal.roles] == ["viewer"]
    token_id = ident.list_tokens("erin")[0].id
    r = runner.invoke(cli, ["token", "revoke", token_id, "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    assert ident.list_tokens("erin")[0].revoked
    actions = [e.action for e in ident.audit_entries()]
    assert actions == ["user.add", "user.role", "token.create", "token.revoke"]
    assert token not in "".join(e.to_json() for e in ident.audit_entries())
    bad = runner.invoke(
        cli, ["user", "add", "x", "-r", "root", "--no-password", "--data-dir", str(data)]
    )
    assert bad.exit_code == 2
    assert "unknown role" in bad.output

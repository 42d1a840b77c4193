"""Device-identity security events in the hash-chained audit log: enrollment (accepted and
refused), renewal (accepted and refused), enrollment-token creation and certificate revocation
over the API, and ``otaguard ca init|issue|token|revoke`` on the server host. Secrets (the
enrollment tokens) appear neither in the exported log nor in the server's log records."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from otaguard.cli.main import app as cli
from otaguard.crypto.device_key import load_or_create_device_key, public_key_dict
from otaguard.demo import HARDWARE, Demo
from otaguard.identity.device_keys import load_or_create_key, make_csr
from otaguard.identity.enroll import enroll, renew
from otaguard.identity.store import token_fingerprint
from otaguard.net.client import make_client

runner = CliRunner()


def _export(data_dir: Path, out: Path) -> tuple[str, list[dict[str, Any]]]:
    r = runner.invoke(cli, ["audit", "export", "--data-dir", str(data_dir), "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    return text, [json.loads(line) for line in text.splitlines()]


def _find(rows: list[dict[str, Any]], action: str, **match: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["action"] == action and all(r[k] == v for k, v in match.items())]


def test_enrollment_renewal_token_and_revocation_are_audited_without_secrets(
    demo_world: Demo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    demo = demo_world
    assert demo.api is not None
    assert demo.ctx is not None
    assert demo.ctx.settings.tls is not None
    server_ca = demo.ctx.settings.tls.ca_cert
    signer = load_or_create_device_key(tmp_path / "manifest.key")
    demo.api.register_device("dev-x", HARDWARE, ["x"], manifest_key=public_key_dict(signer))
    demo.api.register_device("dev-y", HARDWARE, ["y"], manifest_key=public_key_dict(signer))
    token = demo.api.enrollment_token("dev-x")
    key = load_or_create_key(tmp_path / "client.key")
    csr = make_csr(key, "dev-x")
    # Refused: an unknown token, and the right token presented for another device.
    for device, bad in (("dev-x", "not-the-token-but-long-enough"), ("dev-y", token)):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            enroll(demo.url, server_ca, device, bad, csr)
        assert refused.value.response.status_code == 401
    pem = enroll(demo.url, server_ca, "dev-x", token, csr)
    (tmp_path / "client.pem").write_text(pem)
    with make_client(
        demo.url, server_ca, None, client_cert=(tmp_path / "client.pem", tmp_path / "client.key")
    ) as mtls:
        renewed = renew(mtls, make_csr(load_or_create_key(tmp_path / "new.key"), "dev-x"))
    with make_client(demo.url, server_ca, None) as anon:
        assert anon.post("/device/v1/renew", json={"csr": csr}).status_code == 401
    revoked = demo.api._call("POST", "/api/v1/devices/dev-x/revoke-certificates")["revoked"]
    assert len(revoked) == 2

    data_dir = demo.ctx.settings.data_dir
    text, rows = _export(data_dir, tmp_path / "audit.jsonl")
    fingerprint = token_fingerprint(token)
    created = _find(rows, "enrollment.token.create", outcome="ok")
    assert [r["detail"]["enrollment_token"] for r in created] == [fingerprint]
    assert created[0]["detail"]["device"] == "dev-x"
    assert created[0]["actor"] == "user:admin"

    enrolls = _find(rows, "device.enroll")
    assert [(r["target"], r["outcome"]) for r in enrolls] == [
        ("dev-x", "denied"),
        ("dev-y", "denied"),
        ("dev-x", "ok"),
    ]
    assert enrolls[0]["detail"]["token"] == token_fingerprint("not-the-token-but-long-enough")
    assert "another device" in enrolls[1]["detail"]["reason"]
    assert enrolls[1]["detail"]["token"] == fingerprint
    from cryptography import x509

    first = x509.load_pem_x509_certificate(pem.encode()).serial_number
    second = x509.load_pem_x509_certificate(renewed.encode()).serial_number
    assert enrolls[2]["detail"]["serial"] == str(first)
    assert enrolls[2]["actor"] == "device:dev-x"

    renewals = _find(rows, "device.renew")
    assert [r["outcome"] for r in renewals] == ["ok", "denied"]
    assert renewals[0]["detail"]["old_serial"] == str(first)
    assert renewals[0]["detail"]["serial"] == str(second)
    assert renewals[1]["actor"] == "anonymous"

    revokes = _find(rows, "device.certificate.revoke", outcome="ok")
    assert len(revokes) == 1
    assert sorted(revokes[0]["detail"]["revoked"]) == sorted([str(first), str(second)])

    # The secret never appears: not in the exported log, not in any log record.
    assert token not in text
    assert token not in caplog.text
    assert runner.invoke(cli, ["audit", "verify", "--data-dir", str(data_dir)]).exit_code == 0


def test_ca_cli_commands_are_audited_when_a_server_database_is_known(tmp_path: Path) -> None:
    from otaguard.identity.store import IdentityStore
    from otaguard.store.database import Store

    data = tmp_path / "server"
    data.mkdir()
    store = Store(f"sqlite:///{data / 'server.db'}")
    store.migrate()
    ident = IdentityStore(store)
    ca_dir = data / "device-ca"  # the server's layout: the database is found next to it
    r = runner.invoke(
        cli, ["ca", "init", "--dir", str(ca_dir), "--root-key", str(tmp_path / "root.key")]
    )
    assert r.exit_code == 0, r.output
    key = load_or_create_key(tmp_path / "dev.key")
    (tmp_path / "dev.csr").write_text(make_csr(key, "dev-9"))
    issue = ["ca", "issue", "--dir", str(ca_dir), "--csr", str(tmp_path / "dev.csr")]
    issue += ["--device", "dev-9", "--hardware", "rpi4", "--out", str(tmp_path / "dev.pem")]
    assert runner.invoke(cli, issue).exit_code == 0
    r = runner.invoke(
        cli, ["ca", "token", "--dir", str(ca_dir), "--device", "dev-9", "--hardware", "rpi4"]
    )
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    r = runner.invoke(cli, ["ca", "revoke", "--dir", str(ca_dir), "--device", "dev-9"])
    assert r.exit_code == 0, r.output
    entries = list(ident.audit_entries())
    assert [e.action for e in entries] == [
        "ca.init",
        "ca.issue",
        "enrollment.token.create",
        "device.certificate.revoke",
    ]
    assert all(e.actor.startswith("cli:") for e in entries)
    assert entries[1].target == "dev-9"
    assert entries[2].detail["enrollment_token"] == token_fingerprint(token)
    assert entries[3].detail["revoked"] == [entries[1].detail["serial"]]
    assert token not in "".join(e.to_json() for e in entries)

    # A CA elsewhere, with the database named explicitly.
    other = tmp_path / "elsewhere" / "ca"
    init = ["ca", "init", "--dir", str(other), "--root-key", str(tmp_path / "r2.key")]
    r = runner.invoke(cli, [*init, "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    assert [e.action for e in ident.audit_entries()][-1] == "ca.init"
    # No database known: the command works and says it was not audited.
    r = runner.invoke(
        cli, ["ca", "init", "--dir", str(tmp_path / "lone"), "--root-key", str(tmp_path / "r3")]
    )
    assert r.exit_code == 0, r.output
    assert "not audited" in r.stderr
    assert len(list(ident.audit_entries())) == 5
    store.close()

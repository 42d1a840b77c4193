"""The device CA: certificates name the device, CSR checks, CRL revocation, one-time tokens."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from otaguard.errors import AuthError, CompatibilityError
from otaguard.identity import ca
from otaguard.identity.authority import DeviceAuthority
from otaguard.identity.device_keys import KeyType, load_or_create_key, make_csr
from otaguard.identity.store import IdentityStore
from otaguard.store.database import Store
from otaguard.store.identity_models import EnrollmentToken


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'server.db'}")
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def authority(tmp_path: Path, store: Store) -> DeviceAuthority:
    """Key material in ``tmp/ca``, state (tokens, certificates, CRL) in the database."""
    made = DeviceAuthority.init(tmp_path / "ca", tmp_path / "offline" / "root.key")
    return made.attach(IdentityStore(store))


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "ed25519"])
def test_issued_certificate_names_device_and_hardware(
    authority: DeviceAuthority, tmp_path: Path, key_type: KeyType
) -> None:
    key = load_or_create_key(tmp_path / "dev.key", key_type)
    cert = authority.issue(make_csr(key, "ignored-cn"), device_id="dev-1", hardware="rpi4")
    who = ca.verify_device_cert(cert, authority.intermediate())
    assert (who.device_id, who.hardware) == ("dev-1", "rpi4")
    # The names come from the authority, not from the CSR's subject.
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "dev-1"
    # The chain: intermediate signed by the root, root key not in the CA directory.
    root = x509.load_pem_x509_certificate((authority.dir / "root.pem").read_bytes())
    authority.intermediate().verify_directly_issued_by(root)
    assert not any(p.name == "root.key" for p in authority.dir.rglob("*"))
    assert (tmp_path / "offline" / "root.key").stat().st_mode & 0o077 == 0


def test_other_ca_and_wrong_curve_refused(authority: DeviceAuthority, tmp_path: Path) -> None:
    other = DeviceAuthority.init(tmp_path / "other", tmp_path / "other.key")
    key = load_or_create_key(tmp_path / "dev.key")
    foreign = other.sign(make_csr(key, "x"), device_id="dev-1", hardware="rpi4")
    with pytest.raises(AuthError, match="not issued"):
        ca.verify_device_cert(foreign, authority.intermediate())
    p384 = ec.generate_private_key(ec.SECP384R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(p384, hashes.SHA256())
    )
    with pytest.raises(CompatibilityError, match="P-256"):
        ca.issue_device_cert(
            csr,
            device_id="d",
            hardware="h",
            issuer_key=authority._intermediate_key(),
            issuer_cert=authority.intermediate(),
        )
    with pytest.raises(CompatibilityError):
        authority.issue("not a csr", device_id="d", hardware="h")


def test_expired_certificate_refused(authority: DeviceAuthority, tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "dev.key")
    cert = authority.issue(make_csr(key, "x"), device_id="dev-1", hardware="rpi4")
    later = cert.not_valid_after_utc + dt.timedelta(seconds=1)
    with pytest.raises(AuthError, match="expired"):
        ca.verify_device_cert(cert, authority.intermediate(), at=later)


def test_revocation_by_device_lands_in_signed_crl(
    authority: DeviceAuthority, tmp_path: Path
) -> None:
    key = load_or_create_key(tmp_path / "dev.key")
    a1 = authority.issue(make_csr(key, "x"), device_id="a", hardware="h")
    a2 = authority.issue(make_csr(key, "x"), device_id="a", hardware="h")
    b = authority.issue(make_csr(key, "x"), device_id="b", hardware="h")
    assert authority.revoked_serials() == frozenset()
    assert sorted(authority.revoke(device_id="a")) == sorted([a1.serial_number, a2.serial_number])
    revoked = authority.revoked_serials()
    assert a1.serial_number in revoked
    assert b.serial_number not in revoked
    crl = x509.load_pem_x509_crl(authority.crl_pem())
    ca.verify_crl(crl, authority.intermediate())
    # init signed 1, attaching to the database 2, the revocation 3
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    assert {r.serial_number for r in crl} == {a1.serial_number, a2.serial_number}
    # Revoking again adds nothing (but re-signs: the number only grows).
    assert authority.revoke(serial=a1.serial_number) == []
    assert (
        x509.load_pem_x509_crl(authority.crl_pem())
        .extensions.get_extension_for_class(x509.CRLNumber)
        .value.crl_number
        == 4
    )
    # The database decides, not the file: a forged crl.pem changes nothing for the server,
    # and a verifier that reads only the file refuses it.
    other = DeviceAuthority.init(tmp_path / "other", tmp_path / "other.key")
    (authority.dir / "crl.pem").write_bytes(other.crl_pem())
    assert a1.serial_number in authority.revoked_serials()
    with pytest.raises(AuthError, match="CRL"):
        DeviceAuthority(authority.dir).revoked_serials()


def test_enrollment_token_single_use_bound_and_expiring(
    authority: DeviceAuthority, store: Store
) -> None:
    token = authority.create_token("dev-1", "rpi4", created_by="user:ops")
    with store.session(write=False) as s:  # stored hashed, in the database
        (row,) = s.query(EnrollmentToken).all()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert (row.device_id, row.hardware, row.created_by) == ("dev-1", "rpi4", "user:ops")
    assert not (authority.dir / "tokens.json").exists()
    with pytest.raises(AuthError, match="another device"):
        authority.consume_token(token, "dev-2")
    assert authority.consume_token(token, "dev-1") == "rpi4"
    with pytest.raises(AuthError, match="already used"):
        authority.consume_token(token, "dev-1")
    expired = authority.create_token("dev-3", "rpi4", ttl=dt.timedelta(seconds=-1))
    with pytest.raises(AuthError, match="expired"):
        authority.consume_token(expired, "dev-3")
    with pytest.raises(AuthError, match="already used"):  # the expired one is gone too
        authority.consume_token(expired, "dev-3")


def test_ca_cli_init_issue_token_revoke_crl(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from otaguard.cli.main import app

    run = CliRunner()
    d = str(tmp_path / "ca")
    r = run.invoke(app, ["ca", "init", "--dir", d, "--root-key", str(tmp_path / "root.key")])
    assert r.exit_code == 0, r.output
    again = run.invoke(app, ["ca", "init", "--dir", d, "--root-key", str(tmp_path / "r2.key")])
    assert again.exit_code == 2
    # State lives in the server database: without one, a clear refusal.
    r = run.invoke(app, ["ca", "token", "--dir", d, "--device", "dev-9", "--hardware", "rpi4"])
    assert r.exit_code == 2
    assert "server database" in r.output
    assert "--data-dir" in r.output
    db = ["--data-dir", str(tmp_path)]  # creates tmp/server.db, found next to tmp/ca after
    key = load_or_create_key(tmp_path / "dev.key")
    (tmp_path / "dev.csr").write_text(make_csr(key, "dev-9"))
    out = tmp_path / "dev.pem"
    r = run.invoke(
        app,
        [
            "ca",
            "issue",
            "--dir",
            d,
            "--csr",
            str(tmp_path / "dev.csr"),
            "--device",
            "dev-9",
            "--hardware",
            "rpi4",
            "--out",
            str(out),
            *db,
        ],
    )
    assert r.exit_code == 0, r.output
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    assert ca.device_identity(cert).device_id == "dev-9"
    r = run.invoke(app, ["ca", "token", "--dir", d, "--device", "dev-9", "--hardware", "rpi4"])
    assert r.exit_code == 0
    store = Store(f"sqlite:///{tmp_path / 'server.db'}")
    try:
        attached = DeviceAuthority(Path(d)).attach(IdentityStore(store))
        assert attached.consume_token(r.stdout.strip(), "dev-9") == "rpi4"
    finally:
        store.close()
    r = run.invoke(app, ["ca", "revoke", "--dir", d, "--device", "dev-9"])
    assert r.exit_code == 0, r.output
    r = run.invoke(app, ["ca", "crl", "--dir", d, "--refresh"])
    crl = x509.load_pem_x509_crl(r.output.encode())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert run.invoke(app, ["ca", "revoke", "--dir", d]).exit_code == 2


def test_agent_config_names_client_certificate() -> None:
    from otaguard.agent.config import AgentConfig

    repo = Path(__file__).resolve().parents[2]
    cfg = AgentConfig.from_toml(repo / "packaging" / "agent.toml")
    assert cfg.client_cert == (
        Path("/etc/otaguard/client.pem"),
        Path("/etc/otaguard/client.key"),
    )

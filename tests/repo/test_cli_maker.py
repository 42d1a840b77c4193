"""The maker CLI (`otaguard keys|repo|release`) through typer's CliRunner: the happy paths, a
real two-person release with a signature made on a copy and imported, publishing to a running
server, and the errors (exit code 2, one line, no traceback)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from tuf.api.metadata import Metadata
from typer.testing import CliRunner

from otaguard.cli.main import app
from otaguard.cli.maker_repo import _flags
from otaguard.crypto.keys import (
    generate_signer,
    load_public_key,
    load_signer_file,
    public_key_json,
)
from otaguard.demo import Demo
from otaguard.repo.maker import MakerRepository
from otaguard.repo.roles import TARGETS, SignatureStatus, utcnow

PASS_ENV = "OTAGUARD_TEST_PASSPHRASE"
PASSPHRASE = "correct horse battery"


def run(*args: str | Path, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner(env={PASS_ENV: PASSPHRASE, **(env or {})})
    return runner.invoke(app, [str(a) for a in args], input=input)


def ok(*args: str | Path, **kw: object) -> Result:
    result = run(*args, **kw)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return result


def fails(*args: str | Path, match: str, **kw: object) -> Result:
    """Exit code 2, one line starting with 'error:' on stderr, no traceback."""
    result = run(*args, **kw)  # type: ignore[arg-type]
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert match in lines[0], lines[0]
    assert "Traceback" not in result.output
    return result


@dataclass
class Keys:
    dir: Path

    def pub(self, name: str) -> Path:
        return self.dir / f"{name}.pub.json"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    k = Keys(tmp_path / "keys")
    for name in ("root-1", "root-2", "root-3", "targets-1", "targets-2"):
        ok("keys", "generate", name, "--dir", k.dir, "--passphrase-env", PASS_ENV)
    return k


@pytest.fixture
def online_keys(tmp_path: Path) -> Path:
    path = tmp_path / "online.json"
    snap, ts = generate_signer(), generate_signer()
    path.write_text(
        json.dumps(
            {
                "snapshot": json.loads(public_key_json(snap.public_key)),
                "timestamp": json.loads(public_key_json(ts.public_key)),
            }
        )
    )
    return path


def init_args(repo: Path, keys: Keys) -> list[str | Path]:
    return [
        "repo",
        "init",
        repo,
        *[a for i in (1, 2, 3) for a in ("--root-key", keys.pub(f"root-{i}"))],
        "--root-threshold",
        "2",
        *[a for i in (1, 2) for a in ("--targets-key", keys.pub(f"targets-{i}"))],
        "--targets-threshold",
        "2",
    ]


def sign(repo: Path, key: Path, *extra: str | Path) -> Result:
    return ok("release", "sign", repo, "--key", key, "--passphrase-env", PASS_ENV, *extra)


@pytest.fixture
def repo(tmp_path: Path, keys: Keys, online_keys: Path) -> Path:
    path = tmp_path / "repo"
    ok(*init_args(path, keys), "--online-keys", online_keys)
    for i in (1, 2):
        sign(path, keys.key(f"root-{i}"), "--role", "root")
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "fw-2.0.img"
    path.write_bytes(b"firmware 2.0 " * 1000)
    return path


def add_release(repo: Path, image: Path, *extra: str | Path) -> Result:
    return ok(
        "release",
        "add",
        image,
        "--repo",
        repo,
        "--version",
        "2.0",
        "--hardware",
        "board-a,board-b",
        "--security-version",
        "3",
        *extra,
    )


# -- keys generate ----------------------------------------------------------------------------
@pytest.mark.parametrize(("key_type", "scheme"), [("ed25519", "ed25519"), ("ecdsa-p256", "ecdsa")])
def test_keys_generate_writes_encrypted_private_and_tuf_public(
    tmp_path: Path, key_type: str, scheme: str
) -> None:
    result = ok(
        "keys", "generate", "k", "--type", key_type, "--dir", tmp_path, "--passphrase-env", PASS_ENV
    )
    private = (tmp_path / "k.key").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in private
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    pub = load_public_key(tmp_path / "k.pub.json")
    assert pub.keytype.startswith(scheme)
    assert pub.keyid in result.output
    assert PASSPHRASE not in result.output


def test_keys_generate_prompts_with_confirmation(tmp_path: Path) -> None:
    result = run(
        "keys", "generate", "k", "--dir", tmp_path, input=f"{PASSPHRASE}\n{PASSPHRASE}\n", env={}
    )
    assert result.exit_code == 0, result.output
    assert PASSPHRASE not in result.output
    # The prompted passphrase is the one that decrypts the key.
    signer = load_signer_file(tmp_path / "k.key", PASSPHRASE.encode())
    assert signer.public_key.keyid == load_public_key(tmp_path / "k.pub.json").keyid
    mismatch = run("keys", "generate", "k2", "--dir", tmp_path, input="aaaaaaaaa\nbbbbbbbbb\n")
    assert mismatch.exit_code != 0
    assert not (tmp_path / "k2.key").exists()


def test_keys_generate_errors(tmp_path: Path) -> None:
    fails(
        "keys",
        "generate",
        "k",
        "--dir",
        tmp_path,
        "--passphrase-env",
        "NOT_SET_ANYWHERE",
        match="$NOT_SET_ANYWHERE is not set",
    )
    fails(
        "keys",
        "generate",
        "k",
        "--dir",
        tmp_path,
        "--passphrase-env",
        "SHORT",
        env={"SHORT": "short"},
        match="at least 8",
    )
    assert not (tmp_path / "k.key").exists()
    ok("keys", "generate", "k", "--dir", tmp_path, "--passphrase-env", PASS_ENV)
    before = (tmp_path / "k.key").read_bytes()
    fails(
        "keys",
        "generate",
        "k",
        "--dir",
        tmp_path,
        "--passphrase-env",
        PASS_ENV,
        match="refusing to overwrite",
    )
    assert (tmp_path / "k.key").read_bytes() == before
    bad_type = run("keys", "generate", "x", "--type", "rsa", "--dir", tmp_path)
    assert bad_type.exit_code == 2
    assert "Traceback" not in bad_type.output


# -- repo init / status -----------------------------------------------------------------------
def test_repo_init_and_status(tmp_path: Path, keys: Keys, online_keys: Path) -> None:
    path = tmp_path / "repo"
    ok(*init_args(path, keys), "--online-keys", online_keys)
    r = MakerRepository(path)
    root = r.root().signed
    assert root.consistent_snapshot is True
    assert root.roles["root"].threshold == 2
    assert len(root.roles["root"].keyids) == 3
    assert root.roles["targets"].threshold == 2
    assert dt.timedelta(days=364) < root.expires - utcnow() <= dt.timedelta(days=365)
    targets_left = r.targets().signed.expires - utcnow()
    assert dt.timedelta(days=89) < targets_left <= dt.timedelta(days=90)
    online = json.loads(online_keys.read_text())
    assert root.roles["snapshot"].keyids == [online["snapshot"]["keyid"]]
    assert root.roles["timestamp"].keyids == [online["timestamp"]["keyid"]]

    status = ok("repo", "status", path).output
    assert "0/2" in status
    assert "below threshold" in status
    sign(path, keys.key("root-1"), "--role", "root")
    sign(path, keys.key("root-3"), "--role", "root")
    status = ok("repo", "status", path).output
    root_row = next(line for line in status.splitlines() if "root" in line and "2/2" in line)
    assert "ok" in root_row
    assert "targets v1 can still be signed by" in status


def test_repo_init_errors(tmp_path: Path, keys: Keys, online_keys: Path) -> None:
    args = init_args(tmp_path / "repo", keys)
    fails(*args, match="--online-keys FILE or --server")
    bad = [*args, "--online-keys", online_keys]
    bad[bad.index("--root-threshold") + 1] = "4"
    fails(*bad, match="threshold 4 must be between 1 and the 3 keys")
    assert not (tmp_path / "repo" / "metadata" / "root.json").exists()
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"snapshot": {"keytype": "ed25519"}}')
    fails(*args, "--online-keys", garbage, match="online keys must name")
    forged = json.loads(keys.pub("root-1").read_text())
    forged["keyid"] = "ab" * 32
    keys.pub("root-1").write_text(json.dumps(forged))
    fails(*args, "--online-keys", online_keys, match="does not match the key's content")
    fails("repo", "status", tmp_path / "nothing", match="is not an OTAGuard repository")


def test_status_flags_expiring_and_expired() -> None:
    now = utcnow()

    def status(expires_in: dt.timedelta, signed: int) -> SignatureStatus:
        return SignatureStatus(
            TARGETS, 3, 2, tuple("k" * (i + 1) for i in range(signed)), (), now + expires_in
        )

    assert _flags(status(dt.timedelta(days=90), 2), now) == []
    assert _flags(status(dt.timedelta(days=29, hours=1), 2), now) == ["expires in 29d"]
    assert _flags(status(dt.timedelta(days=-1), 2), now) == ["EXPIRED"]
    assert _flags(status(dt.timedelta(days=90), 1), now) == ["below threshold (1 more)"]


# -- release add ------------------------------------------------------------------------------
def test_release_add_with_sbom_and_fixes(tmp_path: Path, repo: Path, image: Path) -> None:
    sbom = tmp_path / "sbom.cdx.json"
    sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}))
    add_release(
        repo, image, "--notes", "fixes the modem", "--sbom", sbom, "--fixes", "CVE-2026-1234"
    )

    target = MakerRepository(repo).targets().signed.targets["board-a/fw-2.0.img"]
    assert target.custom == {
        "version": "2.0",
        "hardware": ["board-a", "board-b"],
        "security_version": 3,
        "notes": "fixes the modem",
        "sbom_sha256": hashlib.sha256(sbom.read_bytes()).hexdigest(),
        "fixes": ["CVE-2026-1234"],
    }
    assert target.length == image.stat().st_size
    assert MakerRepository(repo).targets().signed.version == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", "is not JSON"),
        ('{"bomFormat": "SPDX", "specVersion": "2.3"}', "not a CycloneDX document"),
        ('["CycloneDX"]', "not a CycloneDX document"),
        ('{"bomFormat": "CycloneDX"}', "no CycloneDX specVersion"),
    ],
)
def test_release_add_refuses_bad_sbom(
    tmp_path: Path, repo: Path, image: Path, content: str, message: str
) -> None:
    sbom = tmp_path / "sbom.json"
    sbom.write_text(content)
    fails(
        "release",
        "add",
        image,
        "--repo",
        repo,
        "--version",
        "2.0",
        "--hardware",
        "board-a",
        "--security-version",
        "1",
        "--sbom",
        sbom,
        match=message,
    )
    # Nothing half-done: no new targets version, nothing staged.
    assert MakerRepository(repo).targets().signed.version == 1
    assert not any((repo / "staged").rglob("*.img"))


def test_release_add_errors(repo: Path, image: Path, tmp_path: Path) -> None:
    base = ["release", "add", image, "--repo", repo, "--version", "2.0", "--hardware", "board-a"]
    fails(*base, "--security-version", "-1", match="security version must be >= 0")
    fails(*base, "--security-version", "1", "--fixes", "CVE-1", match="not CVE identifiers")
    fails(*base, "--security-version", "1", "--name", "../x", match="invalid target name")
    missing = [*base, "--security-version", "1"]
    missing[2] = str(tmp_path / "nope.img")
    fails(*missing, match="does not exist")
    assert MakerRepository(repo).targets().signed.version == 1


# -- signing ----------------------------------------------------------------------------------
def test_sign_errors(repo: Path, keys: Keys, image: Path) -> None:
    add_release(repo, image)
    fails(
        "release",
        "sign",
        repo,
        "--key",
        keys.key("targets-1"),
        "--passphrase-env",
        "WRONG",
        env={"WRONG": "wrong passphrase!"},
        match="wrong passphrase",
    )
    fails(
        "release",
        "sign",
        repo,
        "--key",
        keys.key("root-3"),
        "--passphrase-env",
        PASS_ENV,
        match="is not a targets key",
    )
    fails("release", "sign", repo, match="exactly one of --key KEYFILE or --pkcs11")
    fails(
        "release",
        "sign",
        repo,
        "--key",
        keys.key("targets-1"),
        "--role",
        "snapshot",
        match="--role must be root, targets or a delegated role",
    )
    assert MakerRepository(repo).targets().signatures == {}


def test_two_person_release_signed_on_two_machines(
    tmp_path: Path, repo: Path, keys: Keys, image: Path
) -> None:
    """Holder A has the repository and targets-1; holder B gets a copy of the metadata only,
    signs it offline with targets-2 and sends back a detached signature."""
    add_release(repo, image)
    sign(repo, keys.key("targets-1"))
    with pytest.raises(Exception, match="1 of 2 signatures"):
        MakerRepository(repo).publish_bundle()

    machine_b = tmp_path / "machine-b" / "repo"
    shutil.copytree(repo / "metadata", machine_b / "metadata")  # no images, no other keys
    before_b = (machine_b / "metadata" / "targets.json").read_bytes()
    sig_file = tmp_path / "machine-b" / "targets-2.sig.json"
    sign(machine_b, keys.key("targets-2"), "--export-signature", sig_file)
    assert (machine_b / "metadata" / "targets.json").read_bytes() == before_b
    detached = json.loads(sig_file.read_text())
    assert (detached["role"], detached["version"]) == ("targets", 2)
    assert PASSPHRASE not in sig_file.read_text()
    fails(
        "release",
        "sign",
        machine_b,
        "--key",
        keys.key("targets-2"),
        "--passphrase-env",
        PASS_ENV,
        "--export-signature",
        sig_file,
        match="refusing to overwrite",
    )

    result = ok("release", "import-signature", repo, sig_file)
    assert "targets v2: 2/2 signatures, valid" in result.output
    bundle = MakerRepository(repo).publish_bundle()
    md = Metadata.from_bytes(bundle["targets"])
    assert sorted(md.signatures) == sorted(
        load_public_key(keys.pub(f"targets-{i}")).keyid for i in (1, 2)
    )


def test_import_signature_errors(tmp_path: Path, repo: Path, keys: Keys, image: Path) -> None:
    add_release(repo, image)
    copy = tmp_path / "copy"
    shutil.copytree(repo / "metadata", copy / "metadata")
    stale = tmp_path / "stale.sig.json"
    sign(copy, keys.key("targets-2"), "--export-signature", stale)
    other = tmp_path / "fw-3.img"
    other.write_bytes(b"three")
    ok(
        "release",
        "add",
        other,
        "--repo",
        repo,
        "--version",
        "3.0",
        "--hardware",
        "board-a",
        "--security-version",
        "3",
    )
    fails("release", "import-signature", repo, stale, match="over targets v2 but the repository")

    garbage = tmp_path / "garbage.json"
    garbage.write_text("{}")
    fails("release", "import-signature", repo, garbage, match="not an OTAGuard detached")
    fails("release", "import-signature", repo, tmp_path / "missing.json", match="missing.json")

    # A signature whose bytes were tampered with does not verify.
    fresh = tmp_path / "fresh.sig.json"
    shutil.rmtree(copy)
    shutil.copytree(repo / "metadata", copy / "metadata")
    sign(copy, keys.key("targets-2"), "--export-signature", fresh)
    data = json.loads(fresh.read_text())
    sig = data["signature"]["sig"]
    data["signature"]["sig"] = sig[:-4] + ("0000" if not sig.endswith("0000") else "1111")
    fresh.write_text(json.dumps(data))
    fails("release", "import-signature", repo, fresh, match="does not verify")
    assert MakerRepository(repo).targets().signatures == {}


# -- publish to a real server -----------------------------------------------------------------
@pytest.fixture
def server(tmp_path: Path) -> Iterator[Demo]:
    d = Demo(tmp_path / "srv", devices=0, port=0)
    d.start_server()
    try:
        yield d
    finally:
        d.close()


def test_publish_only_after_second_signature(
    tmp_path: Path, keys: Keys, image: Path, server: Demo
) -> None:
    assert server.ctx is not None
    assert server.ctx.settings.tls is not None
    token = tmp_path / "token"
    token.write_text(server.ctx.admin_token)
    ca = server.ctx.settings.tls.ca_cert
    conn = ["--server", server.url, "--token-file", token, "--ca", ca]
    path = tmp_path / "repo"
    ok(*init_args(path, keys), *conn)  # online keys fetched from the server
    assert (
        MakerRepository(path).root().signed.roles["timestamp"].keyids[0]
        == server.ctx.repo.timestamp_signer.public_key.keyid
    )
    sign(path, keys.key("root-1"), "--role", "root")
    sign(path, keys.key("root-2"), "--role", "root")
    add_release(path, image)
    sign(path, keys.key("targets-1"))
    fails("repo", "publish", path, *conn, match="targets v2 has 1 of 2 signatures")
    assert server.ctx.repo.root() is None  # nothing reached the server
    sign(path, keys.key("targets-2"))
    result = ok("repo", "publish", path, *conn)
    assert "published targets v2" in result.output
    found = server.ctx.repo.find_target("board-a/fw-2.0.img")
    assert found is not None
    assert found.length == image.stat().st_size

    wrong_token = tmp_path / "wrong"
    wrong_token.write_text("not-the-token")
    fails(
        "repo",
        "publish",
        path,
        "--server",
        server.url,
        "--token-file",
        wrong_token,
        "--ca",
        ca,
        match="HTTP 401",
    )
    fails(
        "repo",
        "publish",
        path,
        "--server",
        "https://127.0.0.1:9",
        "--token-file",
        token,
        "--ca",
        ca,
        match="server unreachable",
    )


# -- delegations: a team role with its own keys and paths, and hashed bins ---------------------


def _image(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(name.encode() * 500)
    return path


def _add(repo: Path, image: Path, name: str, hardware: str, version: str) -> None:
    ok(
        "release",
        "add",
        image,
        "--repo",
        repo,
        "--name",
        name,
        "--version",
        version,
        "--hardware",
        hardware,
        "--security-version",
        "0",
    )


def test_team_role_signs_only_its_own_paths(tmp_path: Path, repo: Path, keys: Keys) -> None:
    ok("keys", "generate", "team-1", "--dir", keys.dir, "--passphrase-env", PASS_ENV)
    ok(
        "repo",
        "delegate",
        repo,
        "board-a",
        "--key",
        keys.pub("team-1"),
        "--threshold",
        "1",
        "--path",
        "board-a/*",
    )
    for i in (1, 2):
        sign(repo, keys.key(f"targets-{i}"))
    _add(repo, _image(tmp_path, "a.img"), "board-a/fw-2.img", "board-a", "2.0")
    r = MakerRepository(repo)
    assert "board-a/fw-2.img" in r.targets_metadata("board-a").signed.targets
    assert "board-a/fw-2.img" not in r.targets_metadata(TARGETS).signed.targets
    # The maker's own targets key is not a key of the team's role.
    fails(
        "release",
        "sign",
        repo,
        "--key",
        keys.key("targets-1"),
        "--passphrase-env",
        PASS_ENV,
        "--role",
        "board-a",
        match="not a board-a key",
    )
    fails(
        "release",
        "sign",
        repo,
        "--key",
        keys.key("team-1"),
        "--passphrase-env",
        PASS_ENV,
        "--role",
        "nosuchrole",
        match="delegated role",
    )
    out = sign(repo, keys.key("team-1"), "--role", "board-a").output
    assert "board-a" in out
    status = {st.role: st for st in MakerRepository(repo).status()}
    assert status["board-a"].valid
    MakerRepository(repo).publish_bundle()  # every role at threshold: publishable


def test_hashed_bins_and_signing_them_all(tmp_path: Path, repo: Path, keys: Keys) -> None:
    ok("keys", "generate", "bins-1", "--dir", keys.dir, "--passphrase-env", PASS_ENV)
    out = ok(
        "repo",
        "delegate-bins",
        repo,
        "targets",
        "--key",
        keys.pub("bins-1"),
        "--threshold",
        "1",
        "--bits",
        "3",
    ).output
    assert "8 hashed bins" in out
    for i in (1, 2):
        sign(repo, keys.key(f"targets-{i}"))
    for n in range(3):
        _add(repo, _image(tmp_path, f"i{n}.img"), f"board-a/fw-{n}.img", "board-a", f"2.{n}")
    r = MakerRepository(repo)
    assert r.targets_metadata(TARGETS).signed.targets == {}
    assert len(r.all_targets()) == 3
    out = ok(
        "release", "sign-delegated", repo, "--key", keys.key("bins-1"), "--passphrase-env", PASS_ENV
    ).output
    assert "signed 8 role(s); 8 now at threshold" in out
    fails(
        "release",
        "sign-delegated",
        repo,
        "--key",
        keys.key("bins-1"),
        "--passphrase-env",
        PASS_ENV,
        match="nothing to sign",
    )
    MakerRepository(repo).publish_bundle()


def test_delegation_errors_change_nothing(repo: Path, keys: Keys) -> None:
    before = (repo / "metadata" / "targets.json").read_bytes()
    fails(
        "repo",
        "delegate",
        repo,
        "team",
        "--key",
        keys.pub("targets-1"),
        "--threshold",
        "2",
        "--path",
        "x/*",
        match="threshold",
    )
    fails(
        "repo",
        "delegate",
        repo,
        "team",
        "--key",
        keys.pub("targets-1"),
        "--threshold",
        "1",
        "--path",
        "/abs/*",
        match="relative path",
    )
    fails(
        "repo",
        "delegate",
        repo,
        "team",
        "--key",
        keys.pub("targets-1"),
        "--threshold",
        "1",
        "--path",
        "x/*",
        "--parent",
        "ghost",
        match="no role 'ghost'",
    )
    fails(
        "repo",
        "delegate-bins",
        repo,
        "targets",
        "--key",
        keys.pub("targets-1"),
        "--threshold",
        "1",
        "--bits",
        "2",
        "--expected-targets",
        "10",
        match="exactly one",
    )
    assert (repo / "metadata" / "targets.json").read_bytes() == before

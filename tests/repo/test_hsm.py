"""PKCS#11 keys against SoftHSM2: a key generated inside a token (never extractable) signs a
release through securesystemslib's HSMSigner, and the server accepts the published metadata.

Needs the Debian package `softhsm2` (listed in packaging/system-packages.txt); skips otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from otaguard.cli.main import app
from otaguard.crypto.hsm import (
    PIN_ENV,
    TokenKey,
    find_softhsm,
    generate_in_token,
    import_token_key,
    token_signer,
)
from otaguard.crypto.keys import load_public_key
from otaguard.demo import Demo
from otaguard.errors import KeyMaterialError
from otaguard.repo.maker import MakerRepository

PIN = "246810"
SO_PIN = "13579111"
PASS_ENV = "OTAGUARD_TEST_PASSPHRASE"
TOKENS = ("ota-cli", "ota-lib", "ota-errors")

SOFTHSM_LIB = find_softhsm()
pytestmark = pytest.mark.skipif(
    SOFTHSM_LIB is None or shutil.which("softhsm2-util") is None,
    reason="SoftHSM2 is not installed (Debian package softhsm2; `make test` installs it)",
)


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private SoftHSM2 configuration and token directory with fresh tokens."""
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    for label in TOKENS:
        subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                PIN,
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    assert SOFTHSM_LIB is not None
    try:
        yield SOFTHSM_LIB
    finally:
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old


def cli(*args: str | Path, pin: str = PIN) -> Result:
    env = {PIN_ENV: pin, PASS_ENV: "correct horse battery"}
    return CliRunner(env=env).invoke(app, [str(a) for a in args])


def ok(*args: str | Path) -> Result:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert PIN not in result.output
    return result


def fails(*args: str | Path, match: str, pin: str = PIN) -> None:
    result = cli(*args, pin=pin)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert match in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert pin not in result.output


def test_token_key_is_not_extractable_and_signs(softhsm: str) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.exceptions import AttributeSensitive
    from pkcs11.util import biginteger

    ref = generate_in_token("ota-lib", PIN, key_id=7, key_label="lib-test", lib=softhsm)
    assert ref.uri == "hsm:7?label=ota-lib"
    assert ref.public_key.scheme == "ecdsa-sha2-nistp256"
    assert TokenKey.from_json(ref.to_json()) == ref
    assert import_token_key("ota-lib", PIN, key_id=7, lib=softhsm) == ref

    token = pkcs11.lib(softhsm).get_token(token_label="ota-lib")
    with token.open(user_pin=PIN) as session:
        private = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, id=biginteger(7))
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.SENSITIVE] is True
        with pytest.raises(AttributeSensitive):
            private[Attribute.VALUE]

    signer = token_signer(ref, PIN, softhsm)
    sig = signer.sign(b"release bytes")
    ref.public_key.verify_signature(sig, b"release bytes")
    with pytest.raises(Exception):
        ref.public_key.verify_signature(sig, b"other bytes")
    with pytest.raises(KeyMaterialError, match="PinIncorrect"):
        token_signer(ref, "000000", softhsm).sign(b"x")
    with pytest.raises(KeyMaterialError, match="already holds a key with id 7"):
        generate_in_token("ota-lib", PIN, key_id=7, lib=softhsm)
    with pytest.raises(KeyMaterialError, match="no PKCS#11 token labelled"):
        generate_in_token("no-such-token", PIN, lib=softhsm)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Demo]:
    d = Demo(tmp_path / "srv", devices=0, port=0)
    d.start_server()
    try:
        yield d
    finally:
        d.close()


def test_release_signed_in_token_is_accepted_by_server(
    softhsm: str, tmp_path: Path, server: Demo
) -> None:
    keys = tmp_path / "keys"
    lib = ["--pkcs11-lib", softhsm]
    result = ok("keys", "generate", "release-hsm", "--pkcs11", "ota-cli", "--dir", keys, *lib)
    assert "in token 'ota-cli'" in result.output
    ref = json.loads((keys / "release-hsm.hsm.json").read_text())
    assert ref["uri"] == "hsm:2?label=ota-cli"
    assert not list(keys.glob("*.key"))  # no private key material outside the token
    hsm_pub = load_public_key(keys / "release-hsm.pub.json")
    for name in ("root-1", "targets-file"):
        ok("keys", "generate", name, "--dir", keys, "--passphrase-env", PASS_ENV)

    assert server.ctx is not None
    assert server.ctx.settings.tls is not None
    token = tmp_path / "token"
    token.write_text(server.ctx.admin_token)
    conn = ["--server", server.url, "--token-file", token, "--ca", server.ctx.settings.tls.ca_cert]
    repo = tmp_path / "repo"
    ok(
        "repo", "init", repo,
        "--root-key", keys / "root-1.pub.json", "--root-threshold", "1",
        "--targets-key", keys / "release-hsm.pub.json",
        "--targets-key", keys / "targets-file.pub.json",
        "--targets-threshold", "2",
        *conn,
    )  # fmt: skip
    ok("release", "sign", repo, "--role", "root", "--key", keys / "root-1.key",
       "--passphrase-env", PASS_ENV)  # fmt: skip
    image = tmp_path / "fw.img"
    image.write_bytes(b"signed in a token " * 500)
    ok("release", "add", image, "--repo", repo, "--version", "1.0", "--hardware", "board",
       "--security-version", "0")  # fmt: skip

    # Two-person rule across backends: one signature from the token, one from a key file.
    out = ok("release", "sign", repo, "--pkcs11", keys / "release-hsm.hsm.json", *lib).output
    assert "targets v2: 1/2 signatures, below threshold" in out
    fails("repo", "publish", repo, *conn, match="1 of 2 signatures")
    ok("release", "sign", repo, "--key", keys / "targets-file.key", "--passphrase-env", PASS_ENV)
    signatures = MakerRepository(repo).targets().signatures
    assert hsm_pub.keyid in signatures
    hsm_pub.verify_signature(
        signatures[hsm_pub.keyid], MakerRepository(repo).targets().signed_bytes
    )

    ok("repo", "publish", repo, *conn)
    found = server.ctx.repo.find_target("board/fw.img")
    assert found is not None
    published = server.ctx.repo.targets()
    assert published is not None
    assert hsm_pub.keyid in published.signatures

    # The token can also be named by URI, and sign offline into a detached signature.
    sig_file = tmp_path / "hsm.sig.json"
    ok("release", "sign", repo, "--pkcs11", "hsm:2?label=ota-cli", *lib,
       "--export-signature", sig_file)  # fmt: skip
    assert json.loads(sig_file.read_text())["signature"]["keyid"] == hsm_pub.keyid


def test_token_errors_are_one_line(softhsm: str, tmp_path: Path) -> None:
    lib = ["--pkcs11-lib", softhsm]
    ok("keys", "generate", "k", "--pkcs11", "ota-errors", "--dir", tmp_path, *lib)
    ref = tmp_path / "k.hsm.json"
    fails("keys", "generate", "k2", "--pkcs11", "ota-errors", "--dir", tmp_path, *lib,
          match="already holds a key with id 2")  # fmt: skip
    fails("keys", "generate", "k3", "--pkcs11", "nope", "--dir", tmp_path, *lib,
          match="no PKCS#11 token labelled 'nope'")  # fmt: skip
    fails("keys", "generate", "k4", "--pkcs11", "ota-errors", "--type", "ed25519",
          "--dir", tmp_path, *lib, match="ECDSA P-256")  # fmt: skip
    fails("keys", "generate", "k5", "--pkcs11", "ota-errors", "--dir", tmp_path,
          "--pkcs11-lib", tmp_path / "missing.so", match="missing.so does not exist")  # fmt: skip
    repo = tmp_path / "repo"
    online = tmp_path / "online.json"
    pub = json.loads((tmp_path / "k.pub.json").read_text())
    online.write_text(json.dumps({"snapshot": pub, "timestamp": pub}))
    ok("repo", "init", repo, "--root-key", tmp_path / "k.pub.json", "--root-threshold", "1",
       "--targets-key", tmp_path / "k.pub.json", "--targets-threshold", "1",
       "--online-keys", online)  # fmt: skip
    fails("release", "sign", repo, "--role", "root", "--pkcs11", ref, *lib, pin="999999",
          match="PinIncorrect")  # fmt: skip
    fails("release", "sign", repo, "--pkcs11", "hsm:2", *lib, match="must name its token")
    bad_ref = tmp_path / "bad.hsm.json"
    bad_ref.write_text('{"uri": "file:/etc/passwd", "public_key": {}}')
    fails("release", "sign", repo, "--pkcs11", bad_ref, *lib, match="must start with 'hsm:'")
    assert MakerRepository(repo).root().signatures == {}

"""The device's manifest signing key in a PKCS#11 token (SoftHSM2): generated inside the token
by ``otaguard device manifest-key`` (sensitive, non-extractable), registered by its printed
public key, and used by the agent (``[agent.manifest_key_pkcs11]``) to sign the version
manifests of its check-ins, which the server accepts; a file key is then refused, and a wrong
PIN fails the check-in without the PIN showing anywhere.

Needs the Debian package `softhsm2`; skips otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from otaguard.agent.config import AgentConfig, Pkcs11Key
from otaguard.cli.main import app
from otaguard.crypto.device_key import load_device_key
from otaguard.crypto.hsm import PIN_ENV, find_softhsm
from otaguard.demo import HARDWARE, Demo
from otaguard.director.manifest import VersionManifest, sign_manifest
from otaguard.errors import ConfigError
from otaguard.sim.device import Provisioning, SimulatedDevice

PIN = "864213"
LABEL = "ota-device"
SOFTHSM_LIB = find_softhsm()
pytestmark = pytest.mark.skipif(
    SOFTHSM_LIB is None or shutil.which("softhsm2-util") is None,
    reason="SoftHSM2 is not installed (Debian package softhsm2; `make test` installs it)",
)


@pytest.fixture
def softhsm(tmp_path: Path) -> Iterator[str]:
    """A private SoftHSM2 configuration with one fresh token. The PKCS#11 module is unloaded
    before and after, so it reads this configuration (and other tests' afterwards)."""
    import pkcs11

    assert SOFTHSM_LIB is not None
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pkcs11.unload(SOFTHSM_LIB)
    init = ["softhsm2-util", "--init-token", "--free", "--label", LABEL]
    subprocess.run(
        [*init, "--so-pin", "12345678", "--pin", PIN], check=True, capture_output=True, timeout=30
    )
    try:
        yield SOFTHSM_LIB
    finally:
        pkcs11.unload(SOFTHSM_LIB)
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old


def _provision(
    demo: Demo, directory: Path, device_id: str, key: dict[str, object]
) -> SimulatedDevice:
    assert demo.api is not None
    assert demo.ctx is not None
    assert demo.ctx.settings.tls is not None
    assert demo.repo is not None
    credential = demo.api.register_device(device_id, HARDWARE, ["hsm"], manifest_key=key)
    director = demo.run_dir / "director.pub.json"
    from otaguard.crypto.keys import public_key_json

    director.write_text(public_key_json(demo.ctx.director.public_key))
    _target, image = demo.release("1.0.0")
    return SimulatedDevice.provision(
        directory,
        device_id=device_id,
        hardware=HARDWARE,
        credential=credential,
        image=image,
        provisioning=Provisioning(
            server_url=demo.url,
            ca_file=demo.ctx.settings.tls.ca_cert,
            director_key_file=director,
            trusted_root=demo.repo.root_history()[0].read_bytes(),
        ),
    )


def test_agent_signs_check_ins_with_a_non_extractable_token_key(
    softhsm: str,
    demo_world: Demo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.exceptions import AttributeSensitive
    from pkcs11.util import biginteger

    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("PYKCS11LIB", raising=False)
    cli = CliRunner(env={PIN_ENV: PIN})
    args = ["device", "manifest-key", "--pkcs11-lib", softhsm, "--token-label", LABEL]
    r = cli.invoke(app, [*args, "--key-id", "5", "--out", str(tmp_path / "manifest.pub.json")])
    assert r.exit_code == 0, r.output
    assert PIN not in r.output
    public = json.loads(r.stdout)
    assert public["keytype"] == "ecdsa"
    assert public["scheme"] == "ecdsa-sha2-nistp256"
    assert json.loads((tmp_path / "manifest.pub.json").read_text()) == public
    again = cli.invoke(app, [*args, "--key-id", "5"])  # never a second key under the same id
    assert again.exit_code == 2
    assert "already holds a key" in again.output
    existing = cli.invoke(app, [*args, "--key-id", "5", "--existing"])
    assert json.loads(existing.stdout) == public

    token = pkcs11.lib(softhsm).get_token(token_label=LABEL)
    with token.open(user_pin=PIN) as session:
        private = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, id=biginteger(5))
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.SENSITIVE] is True
        with pytest.raises(AttributeSensitive):
            private[Attribute.VALUE]

    # The device is registered with the token key; its agent signs check-ins in the token.
    dev = _provision(demo_world, tmp_path / "dev", "hsm-1", public)
    dev.config.manifest_key_pkcs11 = Pkcs11Key(LABEL, module=softhsm, key_id=5)
    monkeypatch.setenv(PIN_ENV, PIN)
    try:
        dev.power_on()
        assert dev.run_once().action == "idle"  # the server verified the token's signature
        assert demo_world.api is not None
        assert demo_world.api.device("hsm-1")["current_version"] == "1.0.0"
        # A file key (the one provisioning also left in the state dir) is not this device's.
        assert dev.agent is not None
        file_signed = sign_manifest(
            VersionManifest.create(
                device_id="hsm-1",
                hardware=HARDWARE,
                version="1.0.0",
                slot="a",
                security_version=0,
                agent_version="t",
            ),
            load_device_key(dev.config.manifest_key_path),
        )
        assert (
            dev.agent.client.post("/device/v1/checkin", json={"manifest": file_signed}).status_code
            == 401
        )
        # A wrong PIN: the check-in fails (retried later); the PIN shows nowhere.
        monkeypatch.setenv(PIN_ENV, "000000")
        out = dev.run_once()
        assert out.action == "retry"
        assert "cannot sign the version manifest" in out.detail
        assert "000000" not in out.detail
        monkeypatch.setenv(PIN_ENV, PIN)
        assert dev.run_once().action == "idle"
    finally:
        dev.close()
    assert PIN not in caplog.text


def test_pkcs11_table_in_the_agent_config(tmp_path: Path) -> None:
    base = "\n".join(
        [
            "[agent]",
            'device_id = "d"',
            'hardware = "h"',
            'server_url = "https://s"',
            'state_dir = "s"',
            'credential_file = "c"',
            'director_key_file = "k"',
            'trusted_root_file = "r"',
            "[agent.manifest_key_pkcs11]",
            'module = "/usr/lib/softhsm/libsofthsm2.so"',
            'token_label = "device"',
        ]
    )
    toml = tmp_path / "agent.toml"
    toml.write_text(base + '\nkey_id = 3\npin_file = "token.pin"\n')
    key = AgentConfig.from_toml(toml).manifest_key_pkcs11
    assert key == Pkcs11Key(
        "device",
        "/usr/lib/softhsm/libsofthsm2.so",
        3,
        "OTAGUARD_PKCS11_PIN",
        tmp_path / "token.pin",
    )
    toml.write_text(base + '\npin = "1234"\n')  # the PIN itself has no place in the config
    with pytest.raises(ConfigError, match="unknown manifest_key_pkcs11 settings"):
        AgentConfig.from_toml(toml)
    toml.write_text(base + "\nkey_id = 0\n")
    with pytest.raises(ConfigError, match="key_id"):
        AgentConfig.from_toml(toml)

"""The agent renews its TLS client certificate before it expires (agent/renewal.py): against a
real mTLS server a short-lived certificate is replaced by one on a new key, and check-ins and an
update go on with it; a refused renewal leaves the old files byte-identical and backs off; a
power cut anywhere in the switch leaves a key and certificate that belong together."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from otaguard.agent.config import AgentConfig
from otaguard.agent.renewal import CertificateRenewal, certificate_validity, pair_matches
from otaguard.demo import HARDWARE, Demo
from otaguard.device.storage import PowerCut, PowerCutStorage, Storage
from otaguard.errors import AuthError, ConfigError
from otaguard.identity.authority import DeviceAuthority
from otaguard.identity.device_keys import load_or_create_key, make_csr
from otaguard.sim.device import SimulatedDevice

SHORT = dt.timedelta(seconds=90)  # with the CA's 5-minute backdating: 1/4 of the validity left


def _short_lived(authority: DeviceAuthority, cert: Path, key: Path, device_id: str) -> int:
    """Replace the device's certificate with a short-lived one on the same key."""
    issued = authority.issue(
        make_csr(load_or_create_key(key), device_id),
        device_id=device_id,
        hardware=HARDWARE,
        validity=SHORT,
    )
    cert.write_bytes(issued.public_bytes(_pem()))
    return issued.serial_number


def _pem() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM


@pytest.fixture
def device(demo_world: Demo) -> tuple[Demo, SimulatedDevice]:
    demo_world.devices = 1
    _target, image = demo_world.release("1.0.0")
    demo_world.provision_fleet(image)
    dev = demo_world.fleet[0]
    assert demo_world.ctx is not None
    assert dev.config.client_cert is not None
    _short_lived(demo_world.ctx.device_ca, *dev.config.client_cert, dev.config.device_id)
    dev.power_on()  # the agent starts with the short-lived certificate
    return demo_world, dev


def test_agent_renews_a_short_lived_certificate_and_keeps_working(
    device: tuple[Demo, SimulatedDevice],
) -> None:
    demo, dev = device
    assert demo.ctx is not None
    cert_path, key_path = dev.config.client_cert or (Path(), Path())
    old_cert, old_key = cert_path.read_bytes(), key_path.read_bytes()
    old = certificate_validity(cert_path)
    assert old.not_after - old.not_before < dt.timedelta(minutes=7)

    assert dev.run_once().action == "idle"  # renewed, then checked in

    new = certificate_validity(cert_path)
    assert new.serial != old.serial
    assert new.not_after - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)
    assert key_path.read_bytes() != old_key  # a new key pair, not the old key re-certified
    assert pair_matches(cert_path.read_bytes(), key_path.read_bytes())
    assert not pair_matches(old_cert, key_path.read_bytes())
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert not list(cert_path.parent.glob("*.new"))
    # The next requests present the new certificate: with the old one revoked, check-ins
    # and a whole update still work.
    demo.ctx.device_ca.revoke(serial=old.serial)
    assert dev.run_once().action == "idle"
    target, _ = demo.release("2.0.0")
    demo.deploy(target)
    dev.run_until_settled()
    assert dev.version == "2.0.0"
    assert certificate_validity(cert_path).serial == new.serial  # not due again
    entries = [e for e in demo.ctx.identity.audit_entries() if e.action == "device.renew"]
    assert [(e.actor, e.outcome, e.detail["serial"]) for e in entries] == [
        (f"device:{dev.config.device_id}", "ok", str(new.serial))
    ]


def test_refused_renewal_leaves_the_files_and_retries_with_backoff(
    device: tuple[Demo, SimulatedDevice], monkeypatch: pytest.MonkeyPatch
) -> None:
    demo, dev = device
    assert demo.ctx is not None
    assert dev.agent is not None
    cert_path, key_path = dev.config.client_cert or (Path(), Path())
    before = cert_path.read_bytes(), key_path.read_bytes()
    authority = demo.ctx.device_ca
    real_issue = authority.issue
    calls: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> x509.Certificate:
        calls.append("renew")
        raise AuthError("the issuing CA refuses today")

    monkeypatch.setattr(authority, "issue", refuse)
    assert dev.run_once().action == "idle"  # no crash; the check-in used the old certificate
    assert calls == ["renew"]
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before
    assert not list(cert_path.parent.glob("*.new"))
    assert "401" in dev.agent.renewal.last_error
    assert dev.run_once().action == "idle"
    assert calls == ["renew"]  # backing off: not asked again in the next cycle
    # After the backoff delay it tries again, and succeeds once the CA issues again.
    later = time.monotonic() + dev.config.cert_renew_retry + 1
    dev.agent.renewal.clock = lambda: later
    monkeypatch.setattr(authority, "issue", real_issue)
    assert dev.run_once().action == "idle"
    assert (cert_path.read_bytes(), key_path.read_bytes()) != before
    assert dev.agent.renewal.failures == 0


# -- without a server: the switch of files under power cuts, and the settings -----------------


def _setup(tmp_path: Path) -> tuple[AgentConfig, DeviceAuthority, httpx.Client]:
    authority = DeviceAuthority.init(tmp_path / "ca", tmp_path / "root.key")
    state = tmp_path / "state"
    state.mkdir()
    (state / "credential").write_text("x")
    cfg = AgentConfig(
        device_id="dev-1",
        hardware=HARDWARE,
        server_url="https://server.invalid",
        state_dir=state,
        credential_file=state / "credential",
        director_key_file=state / "director.pub.json",
        trusted_root_file=state / "root.json",
        client_cert_file=state / "client.pem",
        client_key_file=state / "client.key",
    )
    key = load_or_create_key(state / "client.key")
    cert = authority.sign(make_csr(key, "dev-1"), device_id="dev-1", hardware=HARDWARE)
    (state / "client.pem").write_bytes(cert.public_bytes(_pem()))

    def handler(request: httpx.Request) -> httpx.Response:
        csr = json.loads(request.content)["csr"]
        issued = authority.sign(csr, device_id="dev-1", hardware=HARDWARE)
        return httpx.Response(201, json={"certificate": issued.public_bytes(_pem()).decode()})

    client = httpx.Client(base_url="https://server.invalid", transport=httpx.MockTransport(handler))
    return cfg, authority, client


def test_power_cut_anywhere_in_the_switch_leaves_a_matching_pair(tmp_path: Path) -> None:
    cfg, _authority, client = _setup(tmp_path)
    assert cfg.client_cert is not None
    cert, key = cfg.client_cert
    old = cert.read_bytes(), key.read_bytes()
    counting = PowerCutStorage()
    CertificateRenewal(cfg, counting).renew(client)
    total = counting.count
    assert total >= 10  # two atomic writes and two renames, with their fsyncs
    outcomes = []
    for lose_unsynced in (False, True):
        for cut_at in range(1, total + 1):
            cert.write_bytes(old[0])
            key.write_bytes(old[1])
            for stale in cert.parent.glob("*.new"):
                stale.unlink()
            storage = PowerCutStorage(cut_at=cut_at, lose_unsynced=lose_unsynced)
            with pytest.raises(PowerCut):
                CertificateRenewal(cfg, storage).renew(client)
            CertificateRenewal(cfg, Storage())  # next boot: recovery before TLS loads
            now = cert.read_bytes(), key.read_bytes()
            assert pair_matches(*now), (lose_unsynced, cut_at, storage.cut_operation)
            assert not list(cert.parent.glob("*.new"))
            outcomes.append("old" if now == old else "new")
            if now != old:
                assert key.stat().st_mode & 0o777 == 0o600
    assert {"old", "new"} <= set(outcomes)  # cuts before and after the point of no return


def test_due_follows_the_configured_fraction(tmp_path: Path) -> None:
    cfg, _authority, client = _setup(tmp_path)
    assert cfg.client_cert is not None
    validity = certificate_validity(cfg.client_cert[0])
    lifetime = validity.not_after - validity.not_before
    at = validity.not_before + lifetime * 0.7  # 30 % left

    renewal = CertificateRenewal(cfg, now=lambda: at)
    assert renewal.due()  # default: renew with less than a third left
    cfg.cert_renew_fraction = 0.25
    assert not renewal.due()
    cfg.cert_renew_fraction = 0
    assert not renewal.due()
    assert not renewal.maybe_renew(client)
    fresh = CertificateRenewal(cfg)
    cfg.cert_renew_fraction = 1 / 3
    assert not fresh.due()  # just issued: 365 days left

    toml = tmp_path / "agent.toml"
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
        ]
    )
    toml.write_text(base + "\ncert_renew_fraction = 0.5\ncert_renew_retry = 60.0\n")
    loaded = AgentConfig.from_toml(toml)
    assert (loaded.cert_renew_fraction, loaded.cert_renew_retry) == (0.5, 60.0)
    toml.write_text(base + "\ncert_renew_fraction = 1.5\n")
    with pytest.raises(ConfigError, match="cert_renew_fraction"):
        AgentConfig.from_toml(toml)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(201, json={"unexpected": True}),
        httpx.Response(201, json={"certificate": "not a certificate"}),
        httpx.Response(503, text="down"),
    ],
)
def test_malformed_or_failed_answers_change_nothing(tmp_path: Path, answer: httpx.Response) -> None:
    cfg, _authority, _client = _setup(tmp_path)
    assert cfg.client_cert is not None
    before = [p.read_bytes() for p in cfg.client_cert]
    client = httpx.Client(
        base_url="https://server.invalid", transport=httpx.MockTransport(lambda _r: answer)
    )
    validity = certificate_validity(cfg.client_cert[0])
    near_end = validity.not_after - dt.timedelta(days=1)
    renewal = CertificateRenewal(cfg, now=lambda: near_end, clock=lambda: 0.0)
    assert renewal.due()
    assert renewal.maybe_renew(client) is False
    assert renewal.failures == 1
    assert renewal.next_attempt == cfg.cert_renew_retry
    assert [p.read_bytes() for p in cfg.client_cert] == before
    assert not list(cfg.client_cert[0].parent.glob("*.new"))

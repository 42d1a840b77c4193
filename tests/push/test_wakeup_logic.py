"""Push wake-ups, pure parts: topic names, the signed message (director key, DSSE) and what a
device refuses, the device's gate (replays, rate limit, coalescing) and the config checks."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from otaguard.agent.push_config import MqttConfig
from otaguard.agent.wake import MAX_REMEMBERED_NONCES, Verdict, WakeGate
from otaguard.crypto.keys import KeyType, generate_signer
from otaguard.director.wakeup import (
    MAX_MESSAGE_BYTES,
    PAYLOAD_TYPE,
    check_topic_prefix,
    sign_wakeup,
    topic,
    verify_wakeup,
)
from otaguard.errors import ConfigError, WakeUpError
from otaguard.server.push_settings import PushSettings

DIRECTOR = generate_signer()
NOW = 1_800_000_000.0


# -- topics ---------------------------------------------------------------------------------
def test_topic_is_per_device_under_the_prefix() -> None:
    assert topic("otaguard", "sim-0001") == "otaguard/devices/sim-0001/wake"
    assert topic("acme/fleet-eu", "x") == "acme/fleet-eu/devices/x/wake"


@pytest.mark.parametrize("device_id", ["", "a/b", "a+", "#", "x\x00", "d" * 129])
def test_device_ids_that_cannot_be_one_topic_level_are_refused(device_id: str) -> None:
    with pytest.raises(WakeUpError):
        topic("otaguard", device_id)


@pytest.mark.parametrize("prefix", ["", "/otaguard", "otaguard/", "a//b", "a/+", "#", "$SYS"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigError):
        check_topic_prefix(prefix)


# -- the message ----------------------------------------------------------------------------
def test_signed_wakeup_verifies_and_says_nothing_about_updates() -> None:
    message = sign_wakeup(DIRECTOR, "sim-0001", now=NOW)
    wake = verify_wakeup(message, DIRECTOR.public_key, device_id="sim-0001", now=NOW + 5)
    assert (wake.device_id, wake.issued) == ("sim-0001", int(NOW))
    payload = json.loads(base64.b64decode(json.loads(message)["payload"]))
    assert set(payload) == {"device_id", "issued", "nonce"}  # no version, target or URL
    assert len(message) < 400


def test_two_wakeups_have_different_nonces() -> None:
    a = verify_wakeup(
        sign_wakeup(DIRECTOR, "d", now=NOW), DIRECTOR.public_key, device_id="d", now=NOW
    )
    b = verify_wakeup(
        sign_wakeup(DIRECTOR, "d", now=NOW), DIRECTOR.public_key, device_id="d", now=NOW
    )
    assert a.nonce != b.nonce


def _tamper(message: bytes, **changes: object) -> bytes:
    env = json.loads(message)
    payload = json.loads(base64.b64decode(env["payload"]))
    payload.update(changes)
    env["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    return json.dumps(env).encode()


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (sign_wakeup(generate_signer(), "d", now=NOW), "not signed by the director"),
        (sign_wakeup(generate_signer(KeyType.ECDSA_P256), "d", now=NOW), "not signed"),
        (_tamper(sign_wakeup(DIRECTOR, "d", now=NOW), issued=int(NOW) + 1), "not signed"),
        (sign_wakeup(DIRECTOR, "other", now=NOW), "for device 'other'"),
        (sign_wakeup(DIRECTOR, "d", now=NOW - 601), "from this device's clock"),
        (sign_wakeup(DIRECTOR, "d", now=NOW + 601), "from this device's clock"),
        (b"wake up!", "not a DSSE envelope"),
        (b"{}", "not a DSSE envelope"),
        (b"[" * 5000, "larger than"),
        (b'{"payload": "!!", "payloadType": "x", "signatures": []}', "not a DSSE envelope"),
    ],
)
def test_device_refuses_what_is_not_a_valid_wakeup_for_it(message: bytes, why: str) -> None:
    with pytest.raises(WakeUpError, match=why):
        verify_wakeup(message, DIRECTOR.public_key, device_id="d", now=NOW)


def test_other_payload_type_signed_by_the_director_is_refused() -> None:
    from securesystemslib.dsse import Envelope

    env = Envelope(b'{"device_id":"d","issued":1,"nonce":"n"}', "application/other", {})
    env.sign(DIRECTOR)
    message = json.dumps(env.to_dict()).encode()
    with pytest.raises(WakeUpError, match=re.escape(PAYLOAD_TYPE)):
        verify_wakeup(message, DIRECTOR.public_key, device_id="d", now=NOW)


def test_signed_payload_with_extra_fields_is_refused() -> None:
    from securesystemslib.dsse import Envelope

    body = {"device_id": "d", "issued": int(NOW), "nonce": "n", "target": "evil.img"}
    env = Envelope(json.dumps(body).encode(), PAYLOAD_TYPE, {})
    env.sign(DIRECTOR)
    with pytest.raises(WakeUpError, match="exactly"):
        verify_wakeup(
            json.dumps(env.to_dict()).encode(), DIRECTOR.public_key, device_id="d", now=NOW
        )


def test_size_limit_is_well_above_a_real_wakeup() -> None:
    assert len(sign_wakeup(DIRECTOR, "d" * 128, now=NOW)) < MAX_MESSAGE_BYTES // 3


# -- the device's gate ----------------------------------------------------------------------
def test_first_wakeup_is_due_at_once_then_rate_limited() -> None:
    gate = WakeGate(min_interval=30)
    assert gate.admit("n1", now=100) is Verdict.SCHEDULED
    assert gate.due_at() == 100
    gate.checkin_started(100)
    assert gate.due_at() is None
    assert gate.admit("n2", now=101) is Verdict.SCHEDULED
    assert gate.due_at() == 130  # not before min_interval after the last check-in


def test_wakeups_in_the_cooldown_coalesce_into_one_checkin() -> None:
    gate = WakeGate(min_interval=30)
    gate.checkin_started(100)
    verdicts = [gate.admit(f"n{i}", now=101 + i) for i in range(50)]
    assert verdicts[0] is Verdict.SCHEDULED
    assert set(verdicts[1:]) == {Verdict.COALESCED}
    assert gate.due_at() == 130
    gate.checkin_started(130)
    assert gate.due_at() is None  # fifty wake-ups, one early check-in


def test_a_replayed_nonce_is_refused() -> None:
    gate = WakeGate(min_interval=1, remember_for=1200)
    assert gate.admit("n1", now=0) is Verdict.SCHEDULED
    gate.checkin_started(1)
    assert gate.admit("n1", now=500) is Verdict.REPLAYED
    assert gate.due_at() is None
    assert gate.admit("n1", now=1300) is Verdict.SCHEDULED  # long past the validity window


def test_a_poll_serves_wakeups_received_before_it_not_after() -> None:
    gate = WakeGate(min_interval=10)
    gate.admit("before", now=50)
    gate.checkin_started(60)  # an ordinary poll
    assert gate.due_at() is None
    gate.checkin_started(100)
    gate.admit("during", now=101)  # arrives while that check-in runs
    assert gate.due_at() == 110


def test_nonce_memory_is_bounded() -> None:
    gate = WakeGate(min_interval=1)
    for i in range(MAX_REMEMBERED_NONCES * 3):
        gate.admit(f"n{i}", now=i * 0.001)
    assert len(gate._nonces) == MAX_REMEMBERED_NONCES


# -- config ---------------------------------------------------------------------------------
def test_agent_mqtt_table(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("secret\n")
    c = MqttConfig.from_table(
        {"host": "broker", "username": "dev", "password_file": "pw", "min_wake_interval": "2m"},
        tmp_path,
    )
    assert (c.broker_port, c.tls, c.min_wake_interval) == (8883, True, 120.0)
    assert c.password() == "secret"
    assert MqttConfig("127.0.0.1", tls=False).broker_port == 1883


@pytest.mark.parametrize(
    ("table", "why"),
    [
        ({"host": ""}, "host"),
        ({"host": "b", "port": 70000}, "port"),
        ({"host": "b", "port": "1883"}, "port"),
        ({"host": "b", "tls": "yes"}, "tls"),
        ({"host": "b", "password_file": "pw"}, "needs mqtt.username"),
        ({"host": "b", "tls": False, "username": "u", "password_file": "pw"}, "clear text"),
        ({"host": "b", "topic_prefix": "a/#"}, "topic_prefix"),
        ({"host": "b", "min_wake_interval": "100ms"}, "min_wake_interval"),
        ({"host": "b", "keepalive": "1s"}, "keepalive"),
        ({"host": "b", "colour": "red"}, "unknown"),
        ({"host": "b", "tls": False, "ca_file": "ca.pem"}, "tls = false"),
    ],
)
def test_bad_agent_mqtt_settings_are_named(
    table: dict[str, object], why: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=why):
        MqttConfig.from_table(table, tmp_path)


def test_plain_mqtt_with_a_password_is_allowed_on_loopback(tmp_path: Path) -> None:
    c = MqttConfig.from_table(
        {"host": "127.0.0.1", "tls": False, "username": "u", "password_file": "pw"}, tmp_path
    )
    assert c.missing_files() == [f"mqtt.password_file ({tmp_path / 'pw'})"]


def test_server_mqtt_config_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("pw\n")
    path = tmp_path / "mqtt.toml"
    path.write_text(
        '[mqtt]\nhost = "127.0.0.1"\nusername = "srv"\npassword_file = "pw"\n'
        'topic_prefix = "acme/eu"\n'
    )
    s = PushSettings.from_toml(path)
    assert (s.broker_port, s.use_tls, s.password(), s.topic_prefix) == (
        1883,
        False,
        "pw",
        "acme/eu",
    )
    path.write_text('[mqtt]\nhost = "b"\npassword = "in the file"\n')
    with pytest.raises(ConfigError, match="unknown mqtt settings"):
        PushSettings.from_toml(path)
    path.write_text('[mqtt]\nhost = "b"\nport = true\n')
    with pytest.raises(ConfigError, match="wrong type"):
        PushSettings.from_toml(path)
    path.write_text('[mqtt]\nhost = "b"\npassword_file = "nope"\nusername = "u"\n')
    with pytest.raises(ConfigError, match="not found"):
        PushSettings.from_toml(path)


# -- the agent's config file and running without paho-mqtt ----------------------------------
def _agent_toml(tmp_path: Path, mqtt: str, device_id: str = "board-1") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[agent]\ndevice_id = "{device_id}"\nhardware = "hw"\n'
        'server_url = "https://ota.example.com"\nstate_dir = "state"\n'
        'credential_file = "cred"\ndirector_key_file = "director.pub.json"\n'
        f'trusted_root_file = "root.json"\n\n[agent.mqtt]\n{mqtt}'
    )
    return path


def test_agent_toml_with_push(tmp_path: Path) -> None:
    from otaguard.agent.config import AgentConfig

    toml = _agent_toml(
        tmp_path, 'host = "b"\nusername = "u"\npassword_file = "pw"\nmin_wake_interval = "1m"\n'
    )
    config = AgentConfig.from_toml(toml)
    assert config.mqtt is not None
    assert config.mqtt.min_wake_interval == 60.0
    assert f"mqtt.password_file ({tmp_path / 'pw'})" in config.missing_files()
    with pytest.raises(ConfigError, match=r"agent.toml: unknown mqtt settings \['password'\]"):
        AgentConfig.from_toml(_agent_toml(tmp_path, 'host = "b"\npassword = "x"\n'))
    with pytest.raises(ConfigError, match="cannot be an MQTT topic level"):
        AgentConfig.from_toml(_agent_toml(tmp_path, 'host = "b"\n', device_id="a/b"))


def test_without_paho_the_agent_says_so_and_polls(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    from otaguard.agent.push import PushWakeups

    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)  # import fails as if absent
    push = PushWakeups(
        MqttConfig("127.0.0.1", tls=False),
        device_id="d",
        director_key=DIRECTOR.public_key,
        on_due=lambda: None,
    )
    assert push.start() is False
    assert "pip install 'otaguard[mqtt]'" in caplog.text
    push.close()  # nothing to close, no error


def test_listener_logic_verifies_then_gates() -> None:
    """What the MQTT thread runs per message, with clocks given (no broker needed)."""
    from otaguard.agent.push import PushWakeups

    due: list[bool] = []
    clock = [1000.0]
    push = PushWakeups(
        MqttConfig("127.0.0.1", tls=False, min_wake_interval=10),
        device_id="d",
        director_key=DIRECTOR.public_key,
        on_due=lambda: due.append(True),
        clock=lambda: clock[0],
        wall_clock=lambda: NOW,
    )
    push.checkin_started()
    assert push.handle(sign_wakeup(generate_signer(), "d", now=NOW)) is None
    assert due == []
    valid = sign_wakeup(DIRECTOR, "d", now=NOW)
    assert push.handle(valid) is Verdict.SCHEDULED
    assert due == [True]
    assert push.due_at() == 1010.0
    assert push.handle(valid) is Verdict.REPLAYED
    assert push.handle(sign_wakeup(DIRECTOR, "d", now=NOW)) is Verdict.COALESCED
    assert due == [True]
    assert dict(push.counts) == {"refused": 1, "scheduled": 1, "replayed": 1, "coalesced": 1}


def test_server_command_refuses_a_bad_mqtt_config_before_starting(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from otaguard.cli.main import app

    bad = tmp_path / "mqtt.toml"
    bad.write_text('[mqtt]\nhost = "broker"\npassword = "hunter2"\n')
    result = CliRunner().invoke(
        app, ["server", "--data-dir", str(tmp_path / "d"), "--mqtt-config", str(bad)]
    )
    assert result.exit_code == 2
    assert "unknown mqtt settings ['password']" in result.output
    assert "hunter2" not in result.output
    assert not (tmp_path / "d").exists()  # nothing was started or created

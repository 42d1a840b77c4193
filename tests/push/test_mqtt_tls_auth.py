"""Push through a broker that requires TLS and a password (a Mosquitto of our own on a free
loopback port, certificate from a local CA): the server's publisher and the device's listener
both verify the broker against the pinned CA, log in with a password read from a file, and a
wake-up goes through. Controls: a wrong password, or a CA that did not issue the broker's
certificate, gets nothing through."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otaguard.agent.push import PushWakeups
from otaguard.agent.push_config import MqttConfig
from otaguard.crypto.keys import generate_signer
from otaguard.crypto.tls import ensure_local_tls
from otaguard.server.push import MqttPush
from otaguard.server.push_settings import PushSettings

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


class NoQueries:
    def started_between(self, since: object, until: object) -> list[int]:
        return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS + password broker on a free port; yields (port, the CA that issued its cert)."""
    if not (Path(MOSQUITTO).exists() and Path(PASSWD).exists()):
        pytest.skip("mosquitto / mosquitto_passwd not installed (Debian package mosquitto)")
    tls = ensure_local_tls(tmp_path / "tls", ["127.0.0.1"])
    passwords = tmp_path / "passwd"
    for user, password in (("server", "server-pw"), ("dev-1", "device-pw")):
        flag = ["-c"] if not passwords.exists() else []
        subprocess.run([PASSWD, "-b", *flag, str(passwords), user, password], check=True)
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"user root\npersistence false\nper_listener_settings true\n"
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        f"certfile {tls.cert}\nkeyfile {tls.key}\n"
    )
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail(f"mosquitto did not start: {proc.stderr.read() if proc.stderr else ''}")
        yield port, tls.ca_cert
    finally:
        proc.terminate()
        proc.wait(10)


def secret(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def run_pair(
    tmp_path: Path, port: int, *, server_ca: Path, device_ca: Path, device_pw: str
) -> tuple[bool, list[str], PushWakeups]:
    """Start publisher and listener, wake dev-1: (woken?, publisher outcomes, listener)."""
    director = generate_signer()
    outcomes: list[str] = []
    push = MqttPush(
        PushSettings(
            host="127.0.0.1",
            port=port,
            ca_file=server_ca,
            username="server",
            password_file=secret(tmp_path, "server.pw", "server-pw"),
        ),
        director,
        NoQueries(),  # type: ignore[arg-type]
        on_outcome=outcomes.append,
    ).start()
    woken = threading.Event()
    listener = PushWakeups(
        MqttConfig(
            "127.0.0.1",
            port=port,
            ca_file=device_ca,
            username="dev-1",
            password_file=secret(tmp_path, "device.pw", device_pw),
        ),
        device_id="dev-1",
        director_key=director.public_key,
        on_due=woken.set,
    )
    listener.start()
    try:
        subscribed = listener.subscribed.wait(5)
        if subscribed:
            push.devices(["dev-1"])
        return subscribed and woken.wait(5), outcomes, listener
    finally:
        listener.close()
        push.close()


def test_wakeup_through_a_tls_broker_with_passwords(
    broker: tuple[int, Path], tmp_path: Path
) -> None:
    port, ca = broker
    woken, outcomes, listener = run_pair(
        tmp_path, port, server_ca=ca, device_ca=ca, device_pw="device-pw"
    )
    assert woken
    assert outcomes == ["published"]
    assert listener.counts["scheduled"] == 1


def test_a_wrong_device_password_is_refused_by_the_broker(
    broker: tuple[int, Path], tmp_path: Path
) -> None:
    port, ca = broker
    woken, _outcomes, listener = run_pair(
        tmp_path, port, server_ca=ca, device_ca=ca, device_pw="guess"
    )
    assert not woken
    assert not listener.subscribed.is_set()


def test_a_broker_certificate_from_another_ca_is_refused(
    broker: tuple[int, Path], tmp_path: Path
) -> None:
    port, _ca = broker
    other = ensure_local_tls(tmp_path / "other-ca", ["127.0.0.1"]).ca_cert
    errors: list[int] = []
    push = MqttPush(
        PushSettings(host="127.0.0.1", port=port, ca_file=other),
        generate_signer(),
        NoQueries(),  # type: ignore[arg-type]
        on_broker_error=lambda: errors.append(1),
    ).start()
    try:
        deadline = time.monotonic() + 5
        while not errors and time.monotonic() < deadline:
            time.sleep(0.05)
        assert errors  # the handshake failed: counted, retried, never connected
        assert not push.connected.is_set()
    finally:
        push.close()
    woken, _o, listener = run_pair(
        tmp_path, port, server_ca=_ca, device_ca=other, device_pw="device-pw"
    )
    assert not woken
    assert not listener.subscribed.is_set()

"""Push wake-ups against the real Mosquitto on 127.0.0.1:1883 and a real server over TLS.

A device agent that polls once an hour gets a new deployment within seconds, because the server
published a wake-up on its topic; a forged wake-up (another key) is ignored while a valid one
triggers a check-in (control), a replayed one is ignored too; wake-ups beyond the device's rate
limit are coalesced; with the broker down the server still serves deployments and check-ins,
counts the failures, and publishes the kept wake-up once a broker is there.
Each test uses its own topic prefix, so tests running side by side do not hear each other.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kit.agent import toml_str, write_agent_toml
from otaguard.agent.service import AgentService, load_config
from otaguard.agent.statemachine import State
from otaguard.crypto.keys import generate_signer
from otaguard.demo import Demo
from otaguard.director.wakeup import sign_wakeup, topic
from otaguard.server.push import MqttPush
from otaguard.server.push_settings import PushSettings

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed")
BROKER = ("127.0.0.1", 1883)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture
def prefix() -> str:
    if not _listening(*BROKER):
        pytest.skip("no MQTT broker on 127.0.0.1:1883 (scripts/system-deps.sh starts Mosquitto)")
    return f"otaguard-test/{uuid.uuid4().hex[:12]}"


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(step)
    return check()


def publish(topic_name: str, *payloads: bytes, port: int = BROKER[1]) -> None:
    """QoS 1 messages over one connection, as anyone who can reach the broker could send."""
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"attacker-{uuid.uuid4().hex}")
    client.connect(BROKER[0], port)
    client.loop_start()
    try:
        sent = [client.publish(topic_name, p, qos=1) for p in payloads]
        for info in sent:
            info.wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def metric(d: Demo, name: str) -> float:
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    trust = ssl.create_default_context(cafile=str(d.ctx.settings.tls.ca_cert))
    text = httpx.get(f"{d.url}/metrics", verify=trust).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


class RunningAgent:
    """``otaguard agent run`` for one simulated device, on a thread."""

    def __init__(self, d: Demo, **mqtt_table: Any) -> None:
        (dev,) = d.fleet
        dev.close()
        toml = write_agent_toml(dev, extra_agent={"poll_interval": "1h", "poll_jitter": 0.0})
        table = "".join(f"{k} = {toml_str(v)}\n" for k, v in mqtt_table.items())
        with toml.open("a") as fh:
            fh.write(f"\n[agent.mqtt]\n{table}")
        self.device = dev
        self.service = AgentService(*load_config(toml))
        self.result: list[Any] = []
        self.thread = threading.Thread(target=lambda: self.result.append(self.service.run()))
        self.thread.start()
        push = self.service.push
        assert push is not None
        self.push = push
        assert push.subscribed.wait(10), "the agent did not subscribe"
        assert wait_for(lambda: self.service.cycles == 1, 30), "first poll did not run"

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(30)
        self.service.close()


def world(
    tmp_path: Path, prefix: str, *, port: int = BROKER[1], rollout_interval: float = 0.5
) -> Demo:
    settings = PushSettings(host="127.0.0.1", port=port, topic_prefix=prefix)
    d = Demo(
        tmp_path / "data",
        devices=1,
        port=0,
        payload_size=32 * 1024,
        server_options={"mqtt": settings, "rollout_interval": rollout_interval},
    )
    d.start_server()
    d.setup_repository()
    _, v1 = d.release("1.0.0")
    d.release("2.0.0")
    d.provision_fleet(v1)
    return d


@pytest.fixture
def agent_world(tmp_path: Path, prefix: str) -> Iterator[tuple[Demo, RunningAgent]]:
    d = world(tmp_path, prefix)
    agent = RunningAgent(
        d, host="127.0.0.1", tls=False, topic_prefix=prefix, min_wake_interval="2s"
    )
    try:
        yield d, agent
    finally:
        agent.stop()
        d.close()


def test_a_deployment_reaches_a_rarely_polling_device_within_seconds(
    agent_world: tuple[Demo, RunningAgent], report_figure: Callable[[str], None]
) -> None:
    d, agent = agent_world
    time.sleep(2.0)  # past min_wake_interval after the first poll: measure the push alone
    started = time.monotonic()
    d.deploy("sim-board/firmware-2.0.0.img")
    assert wait_for(lambda: agent.service.cycles == 2, 10, 0.005), "no early check-in"
    woken = time.monotonic() - started
    # Without the wake-up the next poll is an hour away; with it the agent checks in, is
    # assigned 2.0.0, verifies, installs it into slot b and asks for the reboot.
    agent.thread.join(30)
    elapsed = time.monotonic() - started
    assert not agent.thread.is_alive(), "the device was not woken"
    assert agent.result, "the agent did not finish"
    assert agent.result[0].reboot, agent.result
    assert agent.service.cycles == 2
    assert agent.service.agent.journal.state is State.REBOOT_PENDING
    assert agent.push.counts["scheduled"] == 1
    assert wait_for(lambda: metric(d, 'otaguard_push_wakeups_total{outcome="published"}') >= 1, 5)
    report_figure(
        f"push: deployment created -> check-in of a 1 h poller in {woken * 1000:.0f} ms, "
        f"update installed in {elapsed:.1f} s"
    )
    assert elapsed < 20


def test_forged_and_replayed_wakeups_are_ignored_a_valid_one_triggers(
    agent_world: tuple[Demo, RunningAgent],
) -> None:
    d, agent = agent_world
    assert d.ctx is not None
    device_topic = topic(agent.push.config.topic_prefix, agent.device.config.device_id)
    publish(device_topic, sign_wakeup(generate_signer(), "sim-0001", now=time.time()))
    publish(device_topic, b'{"wake": true}')
    assert wait_for(lambda: agent.push.counts["refused"] == 2, 5)
    time.sleep(1.0)
    assert agent.service.cycles == 1  # no check-in from a forged wake-up
    valid = sign_wakeup(d.ctx.director, "sim-0001", now=time.time())
    publish(device_topic, valid)  # control: the director's signature
    assert wait_for(lambda: agent.service.cycles == 2, 5), "a valid wake-up did not trigger"
    time.sleep(2.5)  # past the rate limit: only the replay check can stop the next one
    publish(device_topic, valid)
    assert wait_for(lambda: agent.push.counts["replayed"] == 1, 5)
    time.sleep(1.0)
    assert agent.service.cycles == 2


def test_wakeups_beyond_the_rate_limit_coalesce(
    agent_world: tuple[Demo, RunningAgent],
) -> None:
    d, agent = agent_world
    assert d.ctx is not None
    device_topic = topic(agent.push.config.topic_prefix, "sim-0001")
    # Valid, distinct wake-ups in a burst: the most a hostile broker could hold and replay.
    burst = [sign_wakeup(d.ctx.director, "sim-0001", now=time.time()) for _ in range(20)]
    started = time.monotonic()
    publish(device_topic, *burst)
    assert wait_for(lambda: sum(agent.push.counts.values()) == 20, 10)
    spread = time.monotonic() - started  # how long the burst took to arrive
    # min_wake_interval is 2 s: the burst makes one early check-in when the interval after
    # the last one allows, plus at most one per interval the burst itself spanned; never 20.
    time.sleep(4.5)
    allowed = 1 + 2 + int(spread // 2)
    assert 2 <= agent.service.cycles <= allowed
    assert agent.push.counts["scheduled"] == agent.service.cycles - 1
    assert agent.push.counts["coalesced"] >= 20 - allowed
    cycles = agent.service.cycles
    time.sleep(2.5)
    assert agent.service.cycles == cycles  # nothing pending any more


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_broker_down_costs_nothing_and_the_wakeup_goes_out_later(
    tmp_path: Path, prefix: str
) -> None:
    port = _free_port()  # no broker here (yet)
    d = world(tmp_path, prefix, port=port)
    broker: subprocess.Popen[bytes] | None = None
    try:
        assert d.ctx is not None
        assert d.api is not None
        started = time.monotonic()
        dep = d.deploy("sim-board/firmware-2.0.0.img")
        assert time.monotonic() - started < 2.0  # the API did not wait for the broker
        (dev,) = d.fleet
        dev.run_until_settled()  # check-ins, download, install, reboot, commit: all served
        assert dev.version == "2.0.0"
        assert d.api.deployment(dep)["state"] == "completed"
        assert wait_for(lambda: metric(d, "otaguard_push_broker_errors_total") >= 2, 10)
        assert metric(d, "otaguard_push_broker_connected") == 0
        assert metric(d, 'otaguard_push_wakeups_total{outcome="published"}') == 0
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(mosquitto).exists():
            pytest.skip("the mosquitto binary is not installed: cannot bring a broker up")
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = subprocess.Popen([mosquitto, "-c", str(conf)], stderr=subprocess.DEVNULL)
        # paho reconnects with backoff (at most a minute between tries); the wake-up kept
        # while the broker was down is then published (counted on the broker's PUBACK).
        assert wait_for(
            lambda: metric(d, 'otaguard_push_wakeups_total{outcome="published"}') >= 1, 75, 0.5
        )
        assert metric(d, "otaguard_push_broker_connected") == 1
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
        d.close()


def test_server_publishes_admissions_of_a_phased_rollout(prefix: str, tmp_path: Path) -> None:
    """A phased rollout wakes its devices when the evaluator admits them, not before."""
    from paho.mqtt.enums import CallbackAPIVersion

    d = world(tmp_path, prefix, rollout_interval=3600)  # evaluated only when asked below
    heard: list[str] = []
    listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex}")
    listener.on_message = lambda _c, _u, msg: heard.append(msg.topic)
    subscribed = threading.Event()
    listener.on_subscribe = lambda *_a: subscribed.set()
    listener.connect(*BROKER)
    listener.subscribe(f"{prefix}/devices/+/wake", qos=1)
    listener.loop_start()
    try:
        assert subscribed.wait(5)
        assert d.api is not None
        plan = {"phases": [{"name": "all", "share": 1.0, "soak_seconds": 0}]}
        body = {"name": "phased", "target_name": "sim-board/firmware-2.0.0.img", "plan": plan}
        r = d.api.http.post("/api/v1/deployments", json={**body, "selector": {"all": True}})
        assert r.status_code == 201, r.text
        time.sleep(1.5)
        assert heard == []  # created, nobody admitted yet: nothing to wake for
        r = d.api.http.post(f"/api/v1/deployments/{r.json()['id']}/evaluate")
        assert r.json()["admitted"] == 1, r.text
        assert wait_for(lambda: heard == [f"{prefix}/devices/sim-0001/wake"], 10), heard
    finally:
        listener.disconnect()
        listener.loop_stop()
        d.close()


def test_push_notes_never_block_and_are_bounded() -> None:
    """Without a started connection the publisher only keeps a bounded, deduplicated set."""
    outcomes: list[str] = []

    class NoQueries:
        def offered(self, deployment_id: int, now: object = None) -> list[str]:
            return []

    push = MqttPush(
        PushSettings(host="127.0.0.1", max_pending=3),
        generate_signer(),
        NoQueries(),  # type: ignore[arg-type]
        on_outcome=outcomes.append,
    )
    started = time.monotonic()
    push.devices(["a", "b", "a", "c", "d", "e"])
    assert time.monotonic() - started < 0.1
    assert list(push._pending) == ["a", "b", "c"]
    assert outcomes == ["dropped", "dropped"]

"""Push wake-ups: how fast the server can wake a fleet through a real MQTT broker, and what one
wake-up costs each side (issue 12, item 6).

The server's publisher (``server/push.MqttPush``, as the app runs it: its worker thread, paho's
network thread, QoS 1, the director's Ed25519 key) is handed N device ids in one note, as a
deployment creation does; one MQTT subscriber on ``<prefix>/devices/+/wake`` stands in for the
fleet and counts what arrives. Reported: the cost of the note itself (what a request pays),
the time until the broker acknowledged all N and until all N arrived, and, measured alone, the
cost to sign one wake-up (server) and to verify one (device), and the message size.

    .venv/bin/python bench/push_wakeup.py [--devices 10000] [--broker 127.0.0.1:1883]
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections import Counter

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from otaguard.crypto.keys import generate_signer
from otaguard.director.wakeup import sign_wakeup, verify_wakeup
from otaguard.server.push import MqttPush
from otaguard.server.push_settings import PushSettings


class NoQueries:
    def offered(self, deployment_id: int, now: object = None) -> list[str]:
        return []

    def cancelled_under_way(self, deployment_id: int) -> list[str]:
        return []

    def started_between(self, since: object, until: object) -> list[int]:
        return []


def per_call_us(fn: object, runs: int = 2000) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / runs * 1e6


def run(devices: int, host: str, port: int) -> dict[str, float]:
    signer = generate_signer()
    prefix = f"otaguard-bench/{uuid.uuid4().hex[:8]}"
    received = 0
    all_in = threading.Event()
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, _msg: object) -> None:
        nonlocal received
        received += 1
        if received >= devices:
            all_in.set()

    fleet = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{uuid.uuid4().hex}")
    fleet.on_message = on_message
    fleet.on_subscribe = lambda *_a: subscribed.set()
    fleet.connect(host, port)
    fleet.subscribe(f"{prefix}/devices/+/wake", qos=1)
    fleet.loop_start()
    outcomes: Counter[str] = Counter()
    acked = threading.Event()

    def on_outcome(outcome: str) -> None:
        outcomes[outcome] += 1
        if outcomes["published"] >= devices:
            acked.set()

    push = MqttPush(
        PushSettings(host=host, port=port, topic_prefix=prefix),
        signer,
        NoQueries(),  # type: ignore[arg-type]
        on_outcome=on_outcome,
    ).start()
    try:
        assert subscribed.wait(10), "subscriber not ready"
        assert push.connected.wait(10), "publisher not connected"
        ids = [f"dev-{i:06d}" for i in range(devices)]
        t0 = time.perf_counter()
        push.devices(ids)
        note = time.perf_counter() - t0
        assert acked.wait(600), f"only {outcomes['published']} acknowledged"
        t_acked = time.perf_counter() - t0
        assert all_in.wait(60), f"only {received} arrived"
        t_in = time.perf_counter() - t0
    finally:
        push.close()
        fleet.disconnect()
        fleet.loop_stop()
    message = sign_wakeup(signer, "dev-000001", now=time.time())
    return {
        "devices": devices,
        "note_us_per_device": note / devices * 1e6,
        "acked_s": t_acked,
        "arrived_s": t_in,
        "per_second": devices / t_in,
        "deferred": outcomes["deferred"],
        "sign_us": per_call_us(lambda: sign_wakeup(signer, "dev-000001", now=time.time())),
        "verify_us": per_call_us(
            lambda: verify_wakeup(
                message, signer.public_key, device_id="dev-000001", now=time.time()
            )
        ),
        "message_bytes": len(message),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--broker", default="127.0.0.1:1883")
    args = parser.parse_args(argv)
    host, _, port = args.broker.partition(":")
    r = run(args.devices, host, int(port or 1883))
    print(
        f"{r['devices']:.0f} devices: note {r['note_us_per_device']:.2f} µs/device; "
        f"all acknowledged by the broker in {r['acked_s']:.2f} s, all arrived in "
        f"{r['arrived_s']:.2f} s ({r['per_second']:.0f} wake-ups/s, {r['deferred']:.0f} "
        f"deferred by paho's queue cap); sign {r['sign_us']:.0f} µs, verify "
        f"{r['verify_us']:.0f} µs, {r['message_bytes']:.0f} bytes per wake-up"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

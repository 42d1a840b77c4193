"""The push wake-up benchmark still runs against the real broker and shows what it claims."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "push_wakeup.py"


def test_every_wakeup_arrives_and_the_note_is_cheap() -> None:
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed")
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1.0).close()
    except OSError:
        pytest.skip("no MQTT broker on 127.0.0.1:1883 (scripts/system-deps.sh starts Mosquitto)")
    spec = importlib.util.spec_from_file_location("push_wakeup", BENCH)
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    r = bench.run(300, "127.0.0.1", 1883)
    assert r["devices"] == 300
    assert r["acked_s"] <= r["arrived_s"] + 1.0
    assert r["note_us_per_device"] < 1000  # a note never waits for the broker
    assert r["message_bytes"] < 512

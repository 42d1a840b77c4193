"""Push wake-ups on the device: an MQTT subscription to the device's own topic, whose verified
messages make the agent service check in early (``agent/service.py``).

Why: with push a fleet can poll rarely (hours) and still start an update within seconds.
The broker is not trusted: every message is verified with the pinned director key
(``director/wakeup.py``) and replays and floods go through ``agent/wake.WakeGate`` (one nonce
once, one early check-in per ``min_wake_interval``), so the worst a broker can do is withhold
wake-ups (the device then polls as before) or cause rate-limited early check-ins.

Optional: ``paho-mqtt`` comes with ``pip install 'otaguard[mqtt]'``. Without it (or without a
broker) the agent logs why push is off and polls; nothing else changes. paho's network thread
reconnects on its own with backoff (1 s doubling to 2 min); this module only reacts.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from securesystemslib.signer import Key

from otaguard.agent.push_config import MqttConfig
from otaguard.agent.wake import Verdict, WakeGate
from otaguard.director.wakeup import topic, verify_wakeup
from otaguard.errors import WakeUpError

log = logging.getLogger(__name__)
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 120


class PushWakeups:
    """The device's wake-up listener. ``handle`` is what the MQTT thread calls per message;
    the service reads ``due_at`` and calls ``checkin_started``; ``on_due`` is called (from
    the MQTT thread) when an early check-in has just been scheduled."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        device_id: str,
        director_key: Key,
        on_due: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.topic = topic(config.topic_prefix, device_id)
        self._key = director_key
        self._on_due = on_due
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._gate = WakeGate(
            min_interval=config.min_wake_interval, remember_for=2 * config.max_wake_age
        )
        self.counts: Counter[str] = Counter()
        self.subscribed = threading.Event()  # set once the broker confirmed the subscription
        self._client: Any = None

    # -- the logic the MQTT thread runs ----------------------------------------------------
    def handle(self, message: bytes) -> Verdict | None:
        """Verify one message and account for it; None when it is refused (not a valid
        wake-up for this device), else what the gate made of it."""
        try:
            wake = verify_wakeup(
                message,
                self._key,
                device_id=self.device_id,
                now=self._wall(),
                max_age=self.config.max_wake_age,
            )
        except WakeUpError as exc:
            with self._lock:
                self.counts["refused"] += 1
                n = self.counts["refused"]
            if n & (n - 1) == 0:  # 1st, 2nd, 4th, 8th...: a flood cannot flood the log
                log.warning("wake-up refused", extra={"reason": str(exc), "refused": n})
            return None
        with self._lock:
            verdict = self._gate.admit(wake.nonce, self._clock())
            self.counts[verdict.value] += 1
        if verdict is Verdict.SCHEDULED:
            log.info("wake-up: checking in early", extra={"verdict": verdict.value})
            self._on_due()
        else:  # replays and coalesced ones: debug only, a broker cannot flood the log
            log.debug("wake-up", extra={"verdict": verdict.value})
        return verdict

    def due_at(self) -> float | None:
        """Monotonic time of the pending early check-in (None: none pending)."""
        with self._lock:
            return self._gate.due_at()

    def checkin_started(self) -> None:
        with self._lock:
            self._gate.checkin_started(self._clock())

    # -- the MQTT connection ------------------------------------------------------------------
    def start(self) -> bool:
        """Connect in the background (paho's thread); False when push cannot run here."""
        try:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError:
            log.warning(
                "push wake-ups are configured but paho-mqtt is not installed "
                "(pip install 'otaguard[mqtt]'); polling only"
            )
            return False
        c = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"otaguard-{self.device_id}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_subscribe = lambda *_args: self.subscribed.set()
        client.on_message = self._message
        client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
        if c.tls:
            context = ssl.create_default_context(cafile=str(c.ca_file) if c.ca_file else None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            client.tls_set_context(context)
        if c.username is not None:
            client.username_pw_set(c.username, c.password())
        client.connect_async(c.host, c.broker_port, keepalive=int(c.keepalive))
        client.loop_start()
        self._client = client
        log.info("push wake-ups on", extra={"broker": f"{c.host}:{c.broker_port}"})
        return True

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def _message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        self.handle(bytes(msg.payload))

    def _connected(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("mqtt broker refused the connection", extra={"reason": str(reason)})
            return
        client.subscribe(self.topic, qos=1)
        log.info("mqtt connected", extra={"topic": self.topic})

    def _disconnected(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.subscribed.clear()
        log.info("mqtt disconnected; reconnecting", extra={"reason": str(reason)})

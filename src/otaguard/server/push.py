"""Push wake-ups from the server: when a device has something new, a signed "check in now" on
its MQTT topic (``director/wakeup.py``), so a fleet can poll rarely.

Why a module of its own, and on a thread of its own: publishing must never slow or fail what
caused it. Routes and the evaluator only *note* what changed (``deployment``, ``cancelled``,
``devices``: a lock, a set insertion, no I/O); one worker thread resolves deployments to
device ids (``store/wakeups.py``), signs each wake-up with the director key at the moment it
is sent, and hands it to paho (QoS 1), whose network thread reconnects on its own with
backoff. The set of devices waiting for a wake-up is bounded (``max_pending``; beyond it new
ones are dropped and counted) and deduplicated; while the broker is down or paho's queue is
full they wait there, and the worker retries with backoff. Broker trouble is logged (first,
second, fourth... occurrence), counted in Prometheus, and never an operator's error: devices
that miss a wake-up get the update at their next poll.

Optional: ``paho-mqtt`` is in the server extra; without a configured broker the server uses
``NoPush`` and nothing here runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

from securesystemslib.signer import Signer

from otaguard.director.wakeup import sign_wakeup, topic
from otaguard.errors import OTAGuardError
from otaguard.server.push_settings import PushSettings
from otaguard.store.base import utcnow
from otaguard.store.wakeups import WakeupQueries

log = logging.getLogger(__name__)


class NoPush:
    """No broker configured: every note is dropped at once (devices poll)."""

    def devices(self, device_ids: Iterable[str]) -> None:
        """Wake these devices."""

    def deployment(self, deployment_id: int) -> None:
        """Wake the devices this deployment now offers its release to."""

    def cancelled(self, deployment_id: int) -> None:
        """Wake the devices whose target in this deployment was cancelled under way."""

    def close(self) -> None:
        """Stop (nothing to stop)."""


Outcome = Callable[[str], None]


class MqttPush(NoPush):
    """Publishes wake-ups to ``settings``' broker; ``start`` it, ``close`` to stop."""

    def __init__(
        self,
        settings: PushSettings,
        signer: Signer,
        queries: WakeupQueries,
        *,
        on_outcome: Outcome = lambda _o: None,
        on_broker_error: Callable[[], None] = lambda: None,
        on_connected: Callable[[bool], None] = lambda _up: None,
    ) -> None:
        self.settings = settings
        self._signer = signer
        self._queries = queries
        self._on_outcome = on_outcome
        self._on_broker_error = on_broker_error
        self._on_connected = on_connected
        self._cond = threading.Condition()
        self._pending: OrderedDict[str, None] = OrderedDict()
        self._requests: deque[tuple[str, int]] = deque(maxlen=10_000)
        self._stopping = False
        self._errors = 0
        self.connected = threading.Event()
        self._client: Any = None
        self._thread = threading.Thread(target=self._run, name="otaguard-push", daemon=True)

    # -- notes from routes and the evaluator (never block, never raise) ---------------------
    def devices(self, device_ids: Iterable[str]) -> None:
        dropped = 0
        with self._cond:
            for device_id in device_ids:
                if device_id in self._pending:
                    continue
                if len(self._pending) >= self.settings.max_pending:
                    dropped += 1
                    continue
                self._pending[device_id] = None
            self._cond.notify()
        for _ in range(dropped):
            self._on_outcome("dropped")

    def deployment(self, deployment_id: int) -> None:
        self._request("offered", deployment_id)

    def cancelled(self, deployment_id: int) -> None:
        self._request("cancelled", deployment_id)

    def _request(self, kind: str, deployment_id: int) -> None:
        with self._cond:
            self._requests.append((kind, deployment_id))
            self._cond.notify()

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> MqttPush:
        """Connect in the background (failures are retried, never raised) and start the
        worker. Raises ``ConfigError`` only for a bad setting (unreadable password file)."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"otaguard-server-{secrets.token_hex(6)}",  # one per process
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_connect_fail = lambda _c, _u: self._broker_error("cannot connect")
        client.on_publish = lambda _c, _u, _mid, _rc, _p: self._on_outcome("published")
        client.reconnect_delay_set(1, 60)
        client.max_queued_messages_set(1000)  # paho's own queue stays bounded too
        client.max_inflight_messages_set(100)  # QoS 1 messages awaiting the broker's ack
        if s.use_tls:
            context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            client.tls_set_context(context)
        if s.username is not None:
            client.username_pw_set(s.username, s.password())
        client.connect_async(s.host, s.broker_port, keepalive=60)
        client.loop_start()
        self._client = client
        self._thread.start()
        return self

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def _connected(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._broker_error(f"connection refused: {reason}")
            return
        self._errors = 0
        self.connected.set()
        self._on_connected(True)
        log.info("mqtt broker connected", extra={"broker": self._broker()})
        with self._cond:
            self._cond.notify()

    def _disconnected(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        self._on_connected(False)
        if was and not self._stopping:
            self._broker_error(f"connection lost: {reason}")

    def _broker_error(self, what: str) -> None:
        self._errors += 1
        self._on_broker_error()
        if self._errors & (self._errors - 1) == 0:  # 1st, 2nd, 4th...: bounded logging
            log.warning(
                "mqtt broker unavailable; wake-ups wait and are retried (devices still poll)",
                extra={"broker": self._broker(), "error": what, "failures": self._errors},
            )

    def _broker(self) -> str:
        return f"{self.settings.host}:{self.settings.broker_port}"

    # -- the worker ---------------------------------------------------------------------------
    def _run(self) -> None:
        checked = utcnow()
        backoff = 0.0
        while True:
            with self._cond:
                if (
                    not self._stopping
                    and not self._requests
                    and not (self._pending and self.connected.is_set())
                ):
                    self._cond.wait(self.settings.scheduled_check_seconds)
                if self._stopping:
                    return
                requests = list(self._requests)
                self._requests.clear()
            checked = self._resolve(requests, checked)
            if backoff:
                with self._cond:
                    self._cond.wait(backoff)
            try:
                backoff = self._publish_some()
            except Exception:  # never let one bad turn end push for the process
                log.exception("wake-up publishing failed; retrying")
                backoff = 1.0

    def _resolve(self, requests: list[tuple[str, int]], checked: dt.datetime) -> dt.datetime:
        """Deployments noted, and those whose scheduled start came, to device ids."""
        now = utcnow()
        try:
            if now - checked >= dt.timedelta(seconds=self.settings.scheduled_check_seconds):
                requests += [("offered", d) for d in self._queries.started_between(checked, now)]
                checked = now
            for kind, deployment_id in requests:
                if kind == "offered":
                    self.devices(self._queries.offered(deployment_id, now))
                else:
                    self.devices(self._queries.cancelled_under_way(deployment_id))
        except Exception as exc:  # a database hiccup: the devices will poll
            log.warning("wake-up targets not resolved: %s", exc)
        return checked

    def _publish_some(self, batch: int = 500) -> float:
        """Publish up to ``batch`` pending wake-ups; the seconds to back off before the next
        try (0: go on)."""
        import paho.mqtt.client as mqtt

        client = self._client
        if client is None or not self.connected.is_set():
            return 0.0  # the connect callback wakes the worker
        for _ in range(batch):
            with self._cond:
                if not self._pending:
                    return 0.0
                device_id, _ = self._pending.popitem(last=False)
            try:
                message = sign_wakeup(self._signer, device_id, now=time.time())
                info = client.publish(topic(self.settings.topic_prefix, device_id), message, qos=1)
            except (OTAGuardError, ValueError) as exc:  # an id that cannot be a topic level
                log.warning("no wake-up for %r: %s", device_id[:40], exc)
                continue
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                with self._cond:  # back in front: it is the next one to try
                    self._pending[device_id] = None
                    self._pending.move_to_end(device_id, last=False)
                self._on_outcome("deferred")
                return 0.2
        return 0.0

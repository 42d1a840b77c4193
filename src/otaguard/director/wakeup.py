"""Push wake-ups over MQTT: the topic a device listens on, and the signed message on it.

Why a module of its own: the server signs wake-ups and the device verifies them, so both sides
share this code (``director/`` belongs to neither side), and it is pure (no clock reads, no
network): tested exhaustively on its own.

A wake-up says only "check in now": it names the device, carries the time it was signed and a
nonce, and nothing about any update (the broker and anyone on it learn that a device was woken,
never what for). It is a **DSSE envelope** (``securesystemslib.dsse``, the standard signing
envelope the version manifests already use) signed by the **director key**, which every device
already pins to check its assignments: no new key to provision, and a wake-up cannot be
forged without the key that could already assign updates. DSSE signs its pre-authentication
encoding (``DSSEv1 <len> <type> <len> <payload>``), which is never TUF canonical JSON, so a
wake-up signature can never be taken for an assignment signature or the other way round.

What a valid wake-up can make a device do is one early check-in, rate-limited on the device
(``agent/wake.py``): the check-in then decides, under all the usual checks, whether there is
anything to do. docs/SECURITY.md ("Push wake-ups") has the threat analysis.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from securesystemslib import exceptions as sslib_exc
from securesystemslib.dsse import Envelope
from securesystemslib.signer import Key, Signer

from otaguard.errors import ConfigError, WakeUpError

PAYLOAD_TYPE = "application/vnd.otaguard.wakeup+json"
#: how far a wake-up's signing time may be from the device's clock (either way)
MAX_AGE_SECONDS = 600.0
#: a wake-up is a few hundred bytes; anything much larger is refused before parsing
MAX_MESSAGE_BYTES = 2048
DEFAULT_PREFIX = "otaguard"
_FORBIDDEN_IN_TOPIC = ("+", "#", "\x00")


def check_topic_prefix(prefix: str) -> str:
    """The prefix, if it can start a topic name: not empty, no wildcards, no NUL, no leading
    or trailing ``/`` and no empty level; else ``ConfigError``."""
    if not isinstance(prefix, str) or not prefix:
        raise ConfigError("mqtt topic prefix must be a non-empty string")
    if any(c in prefix for c in _FORBIDDEN_IN_TOPIC) or prefix.startswith("$"):
        raise ConfigError(f"mqtt topic prefix {prefix!r} may not contain +, #, NUL or start with $")
    if "" in prefix.split("/"):
        raise ConfigError(f"mqtt topic prefix {prefix!r} has an empty level (a stray '/')")
    if len(prefix.encode()) > 256:
        raise ConfigError("mqtt topic prefix is longer than 256 bytes")
    return prefix


def topic(prefix: str, device_id: str) -> str:
    """``<prefix>/devices/<device_id>/wake``: one topic per device, so a broker ACL can let a
    device read only its own (``pattern read <prefix>/devices/%u/wake`` in Mosquitto when the
    broker user name is the device id)."""
    check_topic_prefix(prefix)
    if (
        not device_id
        or "/" in device_id
        or any(c in device_id for c in _FORBIDDEN_IN_TOPIC)
        or len(device_id) > 128
    ):
        raise WakeUpError(f"device id {device_id[:40]!r} cannot be an MQTT topic level")
    return f"{prefix}/devices/{device_id}/wake"


@dataclass(frozen=True)
class WakeUp:
    """What a verified wake-up says: for whom, when it was signed (unix seconds), a nonce."""

    device_id: str
    issued: int
    nonce: str

    def payload(self) -> bytes:
        body = {"device_id": self.device_id, "issued": self.issued, "nonce": self.nonce}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_wakeup(signer: Signer, device_id: str, *, now: float) -> bytes:
    """The message to publish on ``device_id``'s topic: a compact DSSE envelope (JSON) of a
    fresh wake-up signed at ``now`` (unix seconds) by the director key."""
    wake = WakeUp(device_id=device_id, issued=int(now), nonce=secrets.token_hex(12))
    envelope = Envelope(wake.payload(), PAYLOAD_TYPE, {})
    envelope.sign(signer)
    return json.dumps(envelope.to_dict(), separators=(",", ":")).encode()


def verify_wakeup(
    message: bytes,
    director_key: Key,
    *,
    device_id: str,
    now: float,
    max_age: float = MAX_AGE_SECONDS,
) -> WakeUp:
    """The wake-up ``message`` carries, if it is one for ``device_id`` signed by the director
    key within ``max_age`` seconds of ``now`` (the device's clock, unix seconds).

    Raises ``WakeUpError`` naming the check that failed: too large, not a DSSE envelope,
    wrong payload type, not signed by the director key, malformed payload, another device's,
    too old or from the future. Replays inside ``max_age`` are the caller's to refuse (by
    nonce, ``agent/wake.WakeGate``)."""
    if len(message) > MAX_MESSAGE_BYTES:
        raise WakeUpError(f"wake-up larger than {MAX_MESSAGE_BYTES} bytes")
    envelope = _envelope(message)
    if envelope.payload_type != PAYLOAD_TYPE:
        raise WakeUpError(f"wake-up payload type must be {PAYLOAD_TYPE}")
    try:
        envelope.verify([director_key], 1)
    except (sslib_exc.VerificationError, ValueError) as exc:
        raise WakeUpError("wake-up is not signed by the director key") from exc
    wake = _parse_payload(envelope.payload)
    if wake.device_id != device_id:
        raise WakeUpError(f"wake-up is for device {wake.device_id!r}, not {device_id!r}")
    age = now - wake.issued
    if abs(age) > max_age:
        raise WakeUpError(
            f"wake-up signed {int(age)} s from this device's clock (allowed {int(max_age)} s)"
        )
    return wake


def _envelope(message: bytes) -> Envelope:
    try:
        data = json.loads(message)
        return Envelope.from_dict(
            {
                "payload": data["payload"],
                "payloadType": data["payloadType"],
                "signatures": [dict(s) for s in data["signatures"]],
            }
        )
    except Exception as exc:  # hostile bytes: JSON, base64, shape errors of every kind
        raise WakeUpError(f"wake-up is not a DSSE envelope: {type(exc).__name__}") from exc


def _parse_payload(payload: bytes) -> WakeUp:
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise WakeUpError("wake-up payload is not JSON") from exc
    if not isinstance(data, dict) or set(data) != {"device_id", "issued", "nonce"}:
        raise WakeUpError("wake-up payload must hold exactly device_id, issued and nonce")
    device_id, issued, nonce = data["device_id"], data["issued"], data["nonce"]
    if not isinstance(device_id, str) or not isinstance(nonce, str) or not 0 < len(nonce) <= 64:
        raise WakeUpError("wake-up device_id and nonce must be strings (nonce up to 64)")
    if isinstance(issued, bool) or not isinstance(issued, int) or not 0 <= issued < 2**63:
        raise WakeUpError("wake-up issued must be a whole number of seconds")
    return WakeUp(device_id=device_id, issued=issued, nonce=nonce)

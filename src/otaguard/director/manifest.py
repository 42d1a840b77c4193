"""Version manifests signed by the device (in the spirit of Uptane's ECU version manifests).

At every check-in the device reports what it runs (hardware type, version, slot, security
version, agent version) plus a nonce, its clock and its manifest sequence number (strictly
increasing per device, kept durably by the agent: the server's replay check orders manifests by
it, whatever the device's clock says; absent from older agents' manifests), as a JSON payload in a **DSSE envelope**
(``securesystemslib.dsse``) signed with the device's own key. The key is generated on the device
at provisioning; only its public half is registered with the server. The server verifies the
envelope against the registered key before it records anything, so what it shows for a device
is what the device itself signed, not what anyone holding a bearer token or the server's
database claims. Pure logic: no I/O here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from securesystemslib import exceptions as sslib_exc
from securesystemslib.dsse import Envelope
from securesystemslib.signer import Key, Signature, Signer

from otaguard.crypto.keys import key_from_dict
from otaguard.errors import KeyMaterialError, ManifestError

PAYLOAD_TYPE = "application/vnd.otaguard.version-manifest+json"
#: how far a manifest's clock may be from the server's (either way) before it is refused
MAX_CLOCK_SKEW = dt.timedelta(minutes=10)
MAX_PAYLOAD_BYTES = 4096
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: the largest manifest sequence number (a signed 64-bit column on the server)
MAX_SEQUENCE = 2**63 - 1


@dataclass(frozen=True)
class VersionManifest:
    device_id: str
    hardware: str
    version: str | None
    slot: str | None
    security_version: int
    agent_version: str | None
    nonce: str
    timestamp: str  # RFC 3339 UTC, as the device's clock saw it
    #: sha256 (hex) of the image in the active slot, as installed (decompressed); None from
    #: agents that do not report it. The server offers a delta only for exactly this image.
    image_sha256: str | None = None
    # Strictly increasing per device (1, 2, ...; gaps allowed); None: an agent from before
    # sequences (its payload has no such field, and the server orders it by its clock).
    sequence: int | None = None

    @classmethod
    def create(
        cls,
        *,
        device_id: str,
        hardware: str,
        version: str | None,
        slot: str | None,
        security_version: int,
        agent_version: str | None,
        image_sha256: str | None = None,
        now: dt.datetime | None = None,
        sequence: int | None = None,
    ) -> VersionManifest:
        when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
        return cls(
            device_id=device_id,
            hardware=hardware,
            version=version,
            slot=slot,
            security_version=security_version,
            agent_version=agent_version,
            nonce=secrets.token_hex(16),
            timestamp=when.isoformat().replace("+00:00", "Z"),
            image_sha256=image_sha256,
            sequence=sequence,
        )

    def payload(self) -> bytes:
        data = asdict(self)
        # Optional fields left out when unknown: the payload an older agent signs, which an
        # older server accepts.
        for name in ("image_sha256", "sequence"):
            if data[name] is None:
                del data[name]
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @property
    def time(self) -> dt.datetime:
        return _parse_time(self.timestamp)


def sign_manifest(manifest: VersionManifest, signer: Signer) -> dict[str, Any]:
    """The DSSE envelope (JSON dictionary) of ``manifest`` signed by the device key."""
    envelope = Envelope(manifest.payload(), PAYLOAD_TYPE, {})
    envelope.sign(signer)
    result: dict[str, Any] = envelope.to_dict()
    return result


@lru_cache(maxsize=65536)
def parse_public_key(key_json: str) -> Key:
    """A registered device key from its stored JSON (cached: parsed once per process)."""
    try:
        return key_from_dict(json.loads(key_json))
    except (ValueError, KeyMaterialError) as exc:
        raise ManifestError(f"registered manifest key is unusable: {exc}") from exc


def check_public_key(data: dict[str, Any]) -> str:
    """Validate a public key dictionary given at registration; return its stored JSON.

    Raises ``KeyMaterialError`` (the caller's input is bad, not an authentication failure)."""
    try:
        key = key_from_dict(data)
    except KeyMaterialError as exc:
        raise KeyMaterialError(f"manifest_key: {exc}") from exc
    if key.keytype not in ("ed25519", "ecdsa"):
        raise KeyMaterialError(f"manifest_key: unsupported key type {key.keytype!r}")
    # The key material itself must load (a well-formed dict can hold garbage bytes): a probe
    # signature must fail as *unverified*, not as an unusable key (``VerificationError``).
    try:
        key.verify_signature(Signature(key.keyid, "00" * 64), b"probe")
    except sslib_exc.VerificationError as exc:
        raise KeyMaterialError("manifest_key: not a usable public key") from exc
    except sslib_exc.UnverifiedSignatureError:
        pass
    except Exception as exc:
        raise KeyMaterialError(f"manifest_key: not a usable public key: {exc}") from exc
    return json.dumps({"keyid": key.keyid, **key.to_dict()}, sort_keys=True)


def verify_manifest(
    envelope: dict[str, Any],
    key_json: str | None,
    *,
    device_id: str,
    now: dt.datetime | None = None,
    max_skew: dt.timedelta = MAX_CLOCK_SKEW,
) -> VersionManifest:
    """Verify ``envelope`` with the device's registered key; return the manifest it signs.

    Raises:
        ManifestError: a check failed, named in the message: no key registered, malformed
            envelope, wrong payload type, missing or bad signature, another device's
            manifest, or a clock outside ``max_skew`` of the server's (a bound on replays).
            Nothing the manifest reports may be recorded.
    """
    if key_json is None:
        raise ManifestError(f"device {device_id} has no registered manifest key")
    key = parse_public_key(key_json)
    try:
        env = Envelope.from_dict(
            {
                "payload": envelope["payload"],
                "payloadType": envelope["payloadType"],
                "signatures": [dict(s) for s in envelope["signatures"]],
            }
        )
    except Exception as exc:  # b64 / format errors of a hostile body
        raise ManifestError(f"manifest is not a DSSE envelope: {exc}") from exc
    if env.payload_type != PAYLOAD_TYPE:
        raise ManifestError(f"manifest payload type must be {PAYLOAD_TYPE}")
    if not env.signatures:
        raise ManifestError("manifest is not signed")
    try:
        env.verify([key], 1)
    except (sslib_exc.VerificationError, ValueError) as exc:
        raise ManifestError("manifest signature does not verify with the device key") from exc
    manifest = _parse_payload(env.payload)
    if manifest.device_id != device_id:
        raise ManifestError(f"manifest is for device {manifest.device_id!r}, not {device_id!r}")
    skew = abs((now or dt.datetime.now(dt.UTC)) - manifest.time)
    if skew > max_skew:
        raise ManifestError(
            f"manifest time {manifest.timestamp} is {int(skew.total_seconds())} s from the "
            f"server's clock (allowed {int(max_skew.total_seconds())} s)"
        )
    return manifest


def _parse_time(value: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ManifestError(f"manifest timestamp {value[:40]!r} is not RFC 3339") from exc
    if when.tzinfo is None:
        raise ManifestError("manifest timestamp has no time zone")
    return when


def _opt_str(data: dict[str, Any], name: str, limit: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise ManifestError(f"manifest field {name} must be a string of at most {limit} chars")
    return value


def _parse_payload(payload: bytes) -> VersionManifest:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ManifestError(f"manifest payload larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ManifestError("manifest payload is not JSON") from exc
    if not isinstance(data, dict):
        raise ManifestError("manifest payload must be a JSON object")
    unknown = set(data) - set(VersionManifest.__dataclass_fields__)
    if unknown:
        raise ManifestError(f"manifest has unknown fields {sorted(unknown)}")
    sv = data.get("security_version", 0)
    if not isinstance(sv, int) or isinstance(sv, bool) or not 0 <= sv <= 2**31 - 1:
        raise ManifestError("manifest field security_version must be an integer >= 0")
    sequence = data.get("sequence")
    if sequence is not None and (
        not isinstance(sequence, int)
        or isinstance(sequence, bool)
        or not 1 <= sequence <= MAX_SEQUENCE
    ):
        raise ManifestError(f"manifest field sequence must be an integer from 1 to {MAX_SEQUENCE}")
    device_id = _opt_str(data, "device_id", 128)
    hardware = _opt_str(data, "hardware", 64)
    nonce = _opt_str(data, "nonce", 64)
    timestamp = _opt_str(data, "timestamp", 40)
    if not device_id or not hardware or not nonce or not timestamp:
        raise ManifestError("manifest needs device_id, hardware, nonce and timestamp")
    image_sha256 = _opt_str(data, "image_sha256", 64)
    if image_sha256 is not None and not _SHA256.match(image_sha256):
        raise ManifestError("manifest field image_sha256 must be 64 lower-case hex characters")
    manifest = VersionManifest(
        device_id=device_id,
        hardware=hardware,
        version=_opt_str(data, "version", 64),
        slot=_opt_str(data, "slot", 8),
        security_version=sv,
        agent_version=_opt_str(data, "agent_version", 64),
        nonce=nonce,
        timestamp=timestamp,
        image_sha256=image_sha256,
        sequence=sequence,
    )
    _ = manifest.time  # refuse an unparsable clock here, not later
    return manifest

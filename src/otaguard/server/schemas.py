"""Request and response bodies of the HTTP APIs (they make the OpenAPI document precise)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from otaguard.fleet.status import DeviceState, UpdateEvent

DEVICE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TAG = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
MAX_INT = 2**31 - 1


DeviceIdStr = Annotated[str, Field(pattern=DEVICE_ID)]
TagStr = Annotated[str, Field(pattern=TAG)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DsseSignature(Strict):
    keyid: str = Field(min_length=1, max_length=128)
    sig: str = Field(min_length=1, max_length=1024, description="base64 signature")


class SignedManifest(Strict):
    """A DSSE envelope (securesystemslib.dsse) over the device's version manifest: JSON with
    device_id, hardware, version, slot, security_version, agent_version, nonce and timestamp
    (RFC 3339), signed with the device's registered manifest key."""

    payload: str = Field(min_length=1, max_length=8192, description="base64 manifest JSON")
    payloadType: str = Field(  # the DSSE field name
        max_length=128, examples=["application/vnd.otaguard.version-manifest+json"]
    )
    signatures: list[DsseSignature] = Field(max_length=8)


class CheckIn(Strict):
    manifest: SignedManifest


class CheckInReply(BaseModel):
    action: Literal["none", "update"]
    assignment: str | None = Field(
        default=None, description="Signed director assignment (TUF targets JSON)"
    )
    deployment_id: int | None = None
    poll_interval: int


class EventIn(Strict):
    event: UpdateEvent
    report_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._:-]{1,64}$",
        description="Chosen by the device; a retried report with the same id is stored once",
    )
    deployment_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    version: str | None = Field(default=None, max_length=64)
    slot: str | None = Field(default=None, max_length=8)
    detail: dict[
        Annotated[str, Field(max_length=64)],
        Annotated[str, Field(max_length=65536)] | int | float | bool | None,
    ] = Field(
        default_factory=dict,
        max_length=32,
        description="Error details; a long 'log' entry keeps its last 4096 characters",
    )


class EventOut(BaseModel):
    id: int
    device_id: str
    deployment_id: int | None
    event: str
    version: str | None
    slot: str | None
    detail: dict[str, Any]
    created_at: dt.datetime
    report_id: str | None = None


class PublicKeyValue(Strict):
    public: str = Field(min_length=1, max_length=1024)


class PublicKeyIn(Strict):
    """A TUF/securesystemslib public key dictionary."""

    keyid: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    keytype: Literal["ed25519", "ecdsa"]
    scheme: Literal["ed25519", "ecdsa-sha2-nistp256"]
    keyval: PublicKeyValue


class DeviceIn(Strict):
    id: str = Field(pattern=DEVICE_ID)
    hardware: str = Field(min_length=1, max_length=64)
    tags: list[TagStr] = Field(default_factory=list, max_length=32)
    manifest_key: PublicKeyIn | None = Field(
        default=None,
        description="Public key the device signs its version manifests with (generated on the "
        "device at provisioning); a device without one cannot check in",
    )


class DeviceCreated(BaseModel):
    id: str
    credential: str = Field(description="Shown once; the server keeps only its hash")


class DeviceOut(BaseModel):
    id: str
    hardware: str
    tags: list[str]
    current_version: str | None
    active_slot: str | None
    security_version: int
    agent_version: str | None
    update_state: DeviceState = Field(
        description="idle until the device reports, then the last step it reported"
    )
    last_seen: dt.datetime | None
    image_sha256: str | None = Field(
        default=None,
        description="sha256 of the image in the active slot, as its last signed manifest "
        "reported (a delta is offered only from exactly this image)",
    )


class DeviceDetail(DeviceOut):
    events: list[EventOut] = Field(
        description="Status history: the 200 most recent events, oldest first (page back "
        "through older ones with GET /api/v1/devices/{device_id}/events)"
    )


class EventPage(BaseModel):
    items: list[EventOut] = Field(description="Oldest first")
    next_before: int | None = Field(
        description="Pass as ``before`` to get the events before these; null at the start of "
        "the history"
    )


class DevicePage(BaseModel):
    items: list[DeviceOut]
    total: int
    limit: int
    offset: int


class TagsIn(Strict):
    tags: list[TagStr] = Field(max_length=32)


class TagOut(BaseModel):
    tag: str
    devices: int = Field(ge=1)


class ReleaseOut(BaseModel):
    target_name: str
    version: str
    hardware: list[str]
    security_version: int
    sha256: str
    length: int
    custom: dict[str, Any]


class Selector(Strict):
    all: bool = False
    tag: TagStr | None = None
    hardware: str | None = Field(default=None, min_length=1, max_length=64)
    devices: list[DeviceIdStr] | None = Field(default=None, max_length=10000)
    group: str | None = Field(
        default=None,
        pattern=NAME,
        description="A saved dynamic group: its members when the deployment is created "
        "(evaluated once; the filter used is kept in the deployment's selector)",
    )


class DeploymentIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "canary-2-0-0",
                    "target_name": "sim-board/firmware-2.0.0.img",
                    "selector": {"tag": "canary"},
                }
            ]
        },
    )

    name: str = Field(pattern=NAME)
    target_name: str = Field(min_length=1, max_length=255)
    selector: Selector
    plan: dict[str, Any] | None = Field(
        default=None,
        description="Phased rollout: phases (share, devices, tags, soak_seconds, criteria, "
        "advance), limits, production, abort_failure_share (docs/DESIGN.md, Rollouts)",
    )
    start_at: AwareDatetime | None = Field(
        default=None, description="No device is offered the release before this time"
    )
    allow_downgrade: bool = Field(
        default=False, description="Deploy even to devices that run a newer version"
    )


class TransferOut(BaseModel):
    """A deployment's fleet bytes view: what the server served for its devices' assignments
    (target downloads: full images and deltas) against what full images would have needed."""

    bytes_sent: int = 0
    delta_bytes: int = Field(default=0, description="Of bytes_sent, those of delta files")
    full_bytes: int = Field(
        default=0, description="Devices served anything x the release artifact's length"
    )
    saved_bytes: int = Field(default=0, description="full_bytes - bytes_sent")
    devices_served: int = 0
    devices_delta: int = Field(default=0, description="Devices that downloaded a delta")


class DeploymentOut(BaseModel):
    id: int
    name: str
    target_name: str
    selector: dict[str, Any]
    state: str
    created_by: str
    created_at: dt.datetime
    counts: dict[str, int]
    total: int
    states: dict[DeviceState, int] = Field(
        default_factory=dict,
        description="The deployment's devices by their last report for it (the device list's "
        "state vocabulary; idle: none yet), e.g. how many rolled back or are waiting",
    )
    outcome: str | None = None
    rollout_status: str | None = None
    start_at: dt.datetime | None = None
    allow_downgrade: bool = False
    transfer: TransferOut = Field(default_factory=TransferOut)


class ExcludedDeviceOut(BaseModel):
    """A selected device left out of a deployment because it could never install the release."""

    device_id: str
    reason: Literal["hardware", "security_version", "unknown_device"]
    detail: str


class DeploymentCreated(DeploymentOut):
    excluded: list[ExcludedDeviceOut] = Field(
        description="Selected devices left out: hardware the release does not support, a "
        "reported security version above the release's, or an unknown device id"
    )


class DeploymentTargetOut(BaseModel):
    device_id: str
    status: str
    state: DeviceState = Field(
        description="The device's last report for this deployment (idle: none yet); the "
        "vocabulary and filter of the device list's update_state"
    )
    last_event: str | None
    detail: str | None
    updated_at: dt.datetime


class DeploymentPage(BaseModel):
    items: list[DeploymentOut]
    total: int
    limit: int
    offset: int


class DeploymentTargetPage(BaseModel):
    items: list[DeploymentTargetOut]
    total: int
    limit: int
    offset: int


DeploymentStateName = Literal["awaiting_approval", "active", "completed", "cancelled", "aborted"]
TargetStatusName = Literal["pending", "in_progress", "succeeded", "failed", "cancelled"]


class PublishOut(BaseModel):
    targets_version: int
    snapshot_version: int
    timestamp_version: int
    added: list[str]
    roles: dict[str, int] = Field(default_factory=dict)


class RootOut(BaseModel):
    version: int


class ArtifactOut(BaseModel):
    sha256: str
    length: int


class OnlineKeys(BaseModel):
    snapshot: dict[str, Any]
    timestamp: dict[str, Any]
    director: dict[str, Any]


class DeploymentStateOut(BaseModel):
    state: Literal["awaiting_approval", "active", "completed", "cancelled"]
    status: Literal["pending", "in_progress", "succeeded", "failed", "cancelled"]


class ErrorOut(BaseModel):
    """Every 4xx: a stable code (``auth``, ``manifest``, ``not_found``, ``conflict``,
    ``compatibility``, ``validation``, ``too_large``...) and a human-readable detail."""

    error: str
    detail: str
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Validation errors, one per invalid field (422 only)"
    )

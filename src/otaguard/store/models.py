"""SQLAlchemy models of the server's fleet state: devices and their tags, releases,
deployments and their targets, status events, TUF metadata rows, bootstrap API tokens.

The identity tables live in ``identity_models.py`` on the same ``Base`` (``base.py``);
``schema.py`` holds them all.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from otaguard.store.base import Base, UtcDateTime, utcnow


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hardware: Mapped[str] = mapped_column(String(64), index=True)
    credential_hash: Mapped[str] = mapped_column(String(128))
    # Public key (TUF key JSON) the device signs its version manifests with; None: not set yet.
    manifest_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    current_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    active_slot: Mapped[str | None] = mapped_column(String(8), nullable=True)
    security_version: Mapped[int] = mapped_column(Integer, default=0)
    agent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    update_state: Mapped[str] = mapped_column(String(32), default="idle")
    assignment_counter: Mapped[int] = mapped_column(Integer, default=0)
    last_seen: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The last accepted signed manifest's clock and nonce, and the highest manifest sequence
    # number accepted (None: none yet, or reset by a re-enrollment): an earlier one is a
    # replay (store/replay.py ``is_replay``).
    manifest_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    manifest_nonce: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The active slot's image sha256 the last accepted signed manifest reported (None: not
    # reported): a delta is offered only when it was made from exactly this image.
    image_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    manifest_sequence: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # Accepted for updates (False: enrolled, waiting for an operator's accept when the server
    # asks for that step); decommissioned devices are never offered anything again.
    accepted: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    decommissioned_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    tag_rows: Mapped[list[DeviceTag]] = relationship(
        cascade="all, delete-orphan", lazy="select", order_by="DeviceTag.tag"
    )

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.tag_rows]


class DeviceTag(Base):
    """One tag of one device (a table, so filters and pagination run in SQL)."""

    __tablename__ = "device_tags"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Release(Base):
    __tablename__ = "releases"

    target_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), index=True)
    hardware: Mapped[list[str]] = mapped_column(JSON)
    security_version: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(Integer)
    custom: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    target_name: Mapped[str] = mapped_column(ForeignKey("releases.target_name"))
    selector: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="active", index=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # How it ended (fleet.progress.Outcome), once completed, aborted or cancelled.
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    start_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    allow_downgrade: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Phased rollout (None: every device at once): the plan and progress as plan_codec writes
    # them, the status copied out of the progress (the check-in reads it), the pacing bucket.
    rollout_plan: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    rollout_progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    rollout_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    rollout_bucket: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class DeploymentTarget(Base):
    """One device's progress in one deployment."""

    __tablename__ = "deployment_targets"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    last_event: Mapped[str | None] = mapped_column(String(32), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # Phased rollouts: the phase that releases this device, and whether pacing let it start
    # (only admitted targets are offered; without a plan every target is admitted at once).
    phase: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rank: Mapped[int | None] = mapped_column(Integer, nullable=True)  # place in the spread order
    admitted: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Bytes the server served for this device's assignment (full image or delta downloads),
    # and how many of them were a delta's (store/transfers.py).
    bytes_sent: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    delta_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    __table_args__ = (Index("ix_deployment_targets_device", "device_id", "status"),)


class StatusEvent(Base):
    """Every status report a device sent, kept as sent."""

    __tablename__ = "status_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    deployment_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    report_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    event: Mapped[str] = mapped_column(String(32))
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    slot: Mapped[str | None] = mapped_column(String(8), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)

    # A device retries a report it got no answer for; the same id is stored once.
    __table_args__ = (
        Index("ux_status_events_device_report", "device_id", "report_id", unique=True),
    )


class TufMetadata(Base):
    """Published TUF metadata files, by file name (``3.targets.json``, ``timestamp.json``...)."""

    __tablename__ = "tuf_metadata"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    token_hash: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)

"""SQLAlchemy model of saved dynamic groups: a name and a filter (``fleet.groups``), never a
member list (members are whatever devices match when the group is evaluated).

A module of its own on the same ``Base`` (``schema.py`` imports it) so the table sits next to
nothing it does not need; read by the management API and by deployment creation only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from otaguard.store.base import Base, UtcDateTime, utcnow


class DeviceGroupRow(Base):
    """One saved dynamic group."""

    __tablename__ = "device_groups"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    filter: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)

"""Devices, their tags and the bootstrap API tokens: registration, credentials, look-ups.

Why a module of its own: the device registry is read by every management view and written
by registration and tagging, with rules of its own (a device id is registered once, a
credential is checked in constant time, tags live in their own table so filters and pages run
in SQL). ``device_filter`` is shared with deployments, whose selectors pick devices the same
way. Check-ins write devices' reported state in ``store/checkin.py``.
"""

from __future__ import annotations

import hmac

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.exc import IntegrityError

from otaguard.errors import AuthError, ConflictError, NotFoundError
from otaguard.store.credentials import secret_hash
from otaguard.store.engine import Database
from otaguard.store.models import ApiToken, Device, DeviceTag
from otaguard.store.views import DeviceView


def device_filter(
    *, hardware: str | None = None, tag: str | None = None, version: str | None = None
) -> list[ColumnElement[bool]]:
    """Conditions on ``Device`` for each filter given (all must hold)."""
    cond: list[ColumnElement[bool]] = []
    if hardware:
        cond.append(Device.hardware == hardware)
    if version:
        cond.append(Device.current_version == version)
    if tag:
        cond.append(exists().where(DeviceTag.device_id == Device.id, DeviceTag.tag == tag))
    return cond


class Devices:
    """The device registry on one ``Database`` (one transaction per method)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_api_token(self, name: str, token: str) -> None:
        with self.db.session() as s:
            s.merge(ApiToken(token_hash=secret_hash(token), name=name))

    def check_api_token(self, token: str) -> str:
        with self.db.session(write=False) as s:
            row = s.get(ApiToken, secret_hash(token))
            if row is None:
                raise AuthError("invalid API token")
            return row.name

    def register_device(
        self,
        device_id: str,
        hardware: str,
        credential: str,
        tags: list[str] | None = None,
        manifest_key: str | None = None,
        accepted: bool = True,
    ) -> DeviceView:
        """``accepted``: False when an operator must accept the device before it is offered
        updates (``PUT /api/v1/devices/{id}/acceptance``)."""
        with self.db.session() as s:
            if s.get(Device, device_id) is not None:
                raise ConflictError(f"device {device_id} is already registered")
            d = Device(
                id=device_id,
                hardware=hardware,
                credential_hash=secret_hash(credential),
                manifest_key=manifest_key,
                accepted=accepted,
                tag_rows=[DeviceTag(tag=t) for t in sorted(set(tags or []))],
            )
            s.add(d)
            try:
                s.flush()
            except IntegrityError as exc:
                raise ConflictError(f"device {device_id} is already registered") from exc
            return DeviceView.of(d)

    def authenticate_device(self, device_id: str, credential: str) -> None:
        with self.db.session(write=False) as s:
            d = s.get(Device, device_id)
            expected = d.credential_hash if d else secret_hash("\0invalid")
            ok = hmac.compare_digest(expected, secret_hash(credential))
            if d is None or not ok:
                raise AuthError("unknown device or wrong credential")

    def reset_manifest_order(self, device_id: str) -> bool:
        """Forget the device's last accepted manifest (sequence, clock, nonce): its next signed
        manifest is accepted whatever its sequence number. Called when the device enrolls again
        with an operator's one-time token (a re-provisioned or factory-reset device starts its
        count anew). True when there was something to forget."""
        with self.db.session() as s:
            d = s.get(Device, device_id, with_for_update=True)
            if d is None:
                raise NotFoundError(f"no device {device_id}")
            had = d.manifest_sequence is not None or d.manifest_at is not None
            d.manifest_sequence = d.manifest_at = d.manifest_nonce = None
            return had

    def get_device(self, device_id: str) -> DeviceView:
        with self.db.session(write=False) as s:
            d = s.get(Device, device_id)
            if d is None:
                raise NotFoundError(f"no device {device_id}")
            return DeviceView.of(d)

    def list_devices(
        self,
        *,
        hardware: str | None = None,
        tag: str | None = None,
        version: str | None = None,
        state: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[DeviceView], int]:
        """One page of devices (by id) matching every filter given, and the total matching
        (``state``: the update state the device last reported, e.g. ``rolled_back``)."""
        with self.db.session(write=False) as s:
            cond = device_filter(hardware=hardware, tag=tag, version=version)
            if state:
                cond.append(Device.update_state == state)
            total = s.scalar(select(func.count()).select_from(Device).where(*cond)) or 0
            page = s.scalars(
                select(Device).where(*cond).order_by(Device.id).limit(limit).offset(offset)
            )
            return [DeviceView.of(d) for d in page], int(total)

    def set_device_tags(self, device_id: str, tags: list[str]) -> DeviceView:
        with self.db.session() as s:
            d = s.get(Device, device_id, with_for_update=True)
            if d is None:
                raise NotFoundError(f"no device {device_id}")
            wanted = set(tags)
            d.tag_rows = [t for t in d.tag_rows if t.tag in wanted] + [
                DeviceTag(tag=t) for t in sorted(wanted - set(d.tags))
            ]
            s.flush()
            s.refresh(d, ["tag_rows"])
            return DeviceView.of(d)

    def tag_counts(self) -> list[tuple[str, int]]:
        """Every tag in use and how many devices carry it, by tag."""
        with self.db.session(write=False) as s:
            rows = s.execute(
                select(DeviceTag.tag, func.count()).group_by(DeviceTag.tag).order_by(DeviceTag.tag)
            )
            return [(str(tag), int(n)) for tag, n in rows]

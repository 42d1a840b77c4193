"""Small builders shared by the store tests."""

from __future__ import annotations

import hashlib

from otaguard.store.database import ReleaseView, Store

HW = "board-a"


def add_release(
    store: Store, version: str, hardware: tuple[str, ...] = (HW,), security_version: int = 0
) -> ReleaseView:
    name = f"{hardware[0]}/firmware-{version}.img"
    return store.upsert_release(
        name,
        version=version,
        hardware=list(hardware),
        security_version=security_version,
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        length=1000,
        custom={"notes": version},
    )


def add_devices(store: Store, n: int, hardware: str = HW, prefix: str = "dev") -> list[str]:
    ids = [f"{prefix}-{i:03d}" for i in range(n)]
    for device_id in ids:
        store.register_device(device_id, hardware, f"secret-{device_id}")
    return ids


def check_in(store: Store, device_id: str, version: str = "1.0.0", hardware: str = HW) -> object:
    return store.check_in(
        device_id,
        hardware=hardware,
        version=version,
        slot="a",
        security_version=0,
        agent_version="test",
    )

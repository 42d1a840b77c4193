"""Transient obstacles are not failures: expired or stale TUF metadata and a full disk leave
the device waiting (reported "waiting: <reason>", deployment entry in progress) and the update
goes through once the obstacle is gone; a verified-bad release still fails (control)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from tuf.api import exceptions as tuf_exc

from otaguard.agent import trusted_repo
from otaguard.demo import Demo
from otaguard.errors import DownloadError, VerificationError


class Refusing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def refresh(self) -> None:
        raise self.exc


@pytest.mark.parametrize(
    "exc",
    [tuf_exc.ExpiredMetadataError("timestamp.json is expired"),
     tuf_exc.ExpiredMetadataError("snapshot.json is expired")],
)  # fmt: skip
def test_expired_or_stale_metadata_is_transient(
    monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    monkeypatch.setattr(trusted_repo, "updater", lambda *_a: Refusing(exc))
    config: Any = None
    with pytest.raises(DownloadError, match="expired or stale"):
        trusted_repo.trusted_target(config, None, "x")  # type: ignore[arg-type]
    bad = tuf_exc.BadVersionNumberError("targets version 3 < trusted 4")  # rollback: refused
    monkeypatch.setattr(trusted_repo, "updater", lambda *_a: Refusing(bad))
    with pytest.raises(VerificationError):  # control: a bad signature is a refusal
        trusted_repo.trusted_target(config, None, "x")  # type: ignore[arg-type]


def test_disk_full_waits_then_installs(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    d.devices = 1
    d.provision_fleet(v1, sleep=lambda _s: None)
    (dev,) = d.fleet
    dep_id = d.deploy(v2_name)
    assert dev.agent is not None
    slots = dev.agent.slots
    real = slots.open_write

    @contextmanager
    def full(slot: str, offset: int) -> Iterator[Any]:
        raise OSError(errno.ENOSPC, "No space left on device")
        yield  # pragma: no cover

    slots.open_write = full  # type: ignore[method-assign]
    out = dev.run_once()
    assert out.action == "retry"
    assert out.detail.startswith("waiting: download: cannot write slot b: No space left")
    assert dev.agent.journal.state.value == "downloading"
    assert d.api is not None
    (target,) = d.api.deployment_devices(dep_id)
    assert target["status"] == "in_progress"
    assert target["detail"].startswith("waiting: download: cannot write slot b")
    assert d.api.device(dev.config.device_id)["update_state"] == "waiting"

    slots.open_write = real  # type: ignore[method-assign]
    dev.run_until_settled()
    (target,) = d.api.deployment_devices(dep_id)
    assert target["status"] == "succeeded"
    assert dev.version == "2.0.0"

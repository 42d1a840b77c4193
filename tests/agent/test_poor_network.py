"""Poor networks: resumed downloads after dropped connections and reboots, backoff with jitter,
the byte cap, poll jitter, and a bounded retry budget that stops on permanent errors and on a
cancellation from the server. Real server over loopback TLS; faults injected by an httpx
transport wrapper in front of the device's real transport."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from otaguard.agent.agent import UpdateAgent
from otaguard.agent.statemachine import State
from otaguard.demo import Demo
from otaguard.device.storage import PowerCut, PowerCutStorage
from otaguard.errors import DownloadError
from otaguard.net.download import download_into
from otaguard.net.fetcher import CHUNK
from otaguard.net.tls import tls_context
from otaguard.sim.device import SimulatedDevice

IMAGE_PAYLOAD = 256 * 1024


@dataclass
class TargetRequest:
    range: str | None
    status: int
    delivered: int = 0


class _CutStream(httpx.SyncByteStream):
    def __init__(
        self,
        inner: httpx.Response,
        record: TargetRequest,
        budget: int | None,
        on_budget: Callable[[], None],
    ) -> None:
        self.inner = inner
        self.record = record
        self.budget = budget
        self.on_budget = on_budget

    def __iter__(self) -> Iterator[bytes]:
        try:
            for piece in self.inner.iter_raw():
                if self.budget is not None and self.record.delivered + len(piece) >= self.budget:
                    piece = piece[: self.budget - self.record.delivered]
                    self.record.delivered += len(piece)
                    if piece:
                        yield piece
                    self.on_budget()
                    raise httpx.ReadError("connection dropped by the flaky network")
                self.record.delivered += len(piece)
                yield piece
        finally:
            self.inner.close()


@dataclass
class FlakyNetwork(httpx.BaseTransport):
    """Forwards to the real server; target downloads may be cut after ``cut_after`` bytes
    (per response, for the first ``drops`` responses) or answered with ``status``."""

    ca_file: Any
    cut_after: int | None = None
    drops: int = 10**6
    status: int | None = None
    on_cut: Callable[[], None] = lambda: None
    before_first_target: Callable[[], None] = lambda: None
    targets: list[TargetRequest] = field(default_factory=list)
    state_checks: int = 0

    def __post_init__(self) -> None:
        self.inner = httpx.HTTPTransport(verify=tls_context(self.ca_file))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/device/v1/deployments/"):
            self.state_checks += 1
        if not path.startswith("/tuf/targets/"):
            return self.inner.handle_request(request)
        if not self.targets:
            self.before_first_target()
        if self.status is not None:
            self.targets.append(TargetRequest(request.headers.get("range"), self.status))
            return httpx.Response(self.status, content=b"nope")
        response = self.inner.handle_request(request)
        record = TargetRequest(request.headers.get("range"), response.status_code)
        self.targets.append(record)
        budget = self.cut_after if len(self.targets) <= self.drops else None
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CutStream(response, record, budget, self.on_cut),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self.inner.close()

    @property
    def transferred(self) -> int:
        return sum(t.delivered for t in self.targets)


@dataclass
class Rig:
    d: Demo
    net: FlakyNetwork
    dev: SimulatedDevice
    dep_id: int
    image_len: int
    sleeps: list[float]

    def target_status(self) -> dict[str, Any]:
        assert self.d.api is not None
        (t,) = self.d.api.deployment_devices(self.dep_id)
        return t

    def last_event(self) -> dict[str, Any]:
        assert self.d.api is not None
        event: dict[str, Any] = self.d.api.device(self.dev.config.device_id)["events"][-1]
        return event


def rig(d: Demo, *, deploy: bool = True, **net: Any) -> Rig:
    d.payload_size = IMAGE_PAYLOAD
    d.devices = 1
    _, v1 = d.release("1.0.0")
    v2_name, v2 = d.release("2.0.0", security_version=1)
    assert d.ctx is not None
    tls = d.ctx.settings.tls
    assert tls is not None
    network = FlakyNetwork(tls.ca_cert, **net)
    sleeps: list[float] = []
    d.provision_fleet(v1, http_transport=network, sleep=sleeps.append)
    dev = d.fleet[0]
    dev.config.checkpoint_bytes = 64 * 1024
    dev.config.checkpoint_journal_seconds = 0.0
    dev.config.cancel_check_seconds = 0.0
    dep_id = d.deploy(v2_name) if deploy else 0
    return Rig(d, network, dev, dep_id, len(v2), sleeps)


def test_dropped_connections_resume_with_range_not_restart(demo_world: Demo) -> None:
    r = rig(demo_world, cut_after=20_000)
    outcomes = r.dev.run_until_settled()

    assert outcomes[-1].detail == "committed"
    assert r.dev.version == "2.0.0"
    assert r.target_status()["status"] == "succeeded"
    drops = r.image_len // 20_000
    assert len(r.net.targets) == drops + 1  # one request per drop, and the last one completes
    ranges = [t.range for t in r.net.targets]
    assert ranges[0] is None
    # Each request resumes exactly where the previous one stopped: nothing is fetched twice.
    assert ranges[1:] == [f"bytes={20_000 * i}-" for i in range(1, drops + 1)]
    assert all(t.status == 206 for t in r.net.targets[1:])
    assert r.net.transferred == r.image_len < 1.5 * r.image_len
    # Each failure made progress, so the backoff never grew past its first step.
    assert len(r.sleeps) == drops
    assert all(0 <= s <= r.dev.config.backoff_base for s in r.sleeps)


def test_power_cut_mid_download_resumes_from_the_journaled_checkpoint(demo_world: Demo) -> None:
    d = demo_world
    storage = PowerCutStorage(lose_unsynced=True)
    r = rig(d, cut_after=150_000, drops=1, on_cut=storage.cut_now)
    dev = SimulatedDevice(
        r.dev.directory, r.dev.config, http_transport=r.net, sleep=r.sleeps.append, storage=storage
    )
    dev.power_on()
    with pytest.raises(PowerCut):
        dev.run_once()
    dev.close()
    assert r.net.targets[0].delivered == 150_000
    assert SimulatedDevice(r.dev.directory, r.dev.config).env.read()["boot_slot"] == "a"

    rebooted = SimulatedDevice(r.dev.directory, r.dev.config, http_transport=r.net)
    rebooted.power_on()
    assert rebooted.agent is not None
    assert rebooted.agent.journal.state is State.DOWNLOADING
    checkpoint = rebooted.agent.journal.bytes_written
    assert checkpoint == 2 * 64 * 1024  # the last checkpoint before the cut (synced, journaled)
    outcomes = rebooted.run_until_settled()

    assert outcomes[-1].detail == "committed"
    assert [t.range for t in r.net.targets] == [None, f"bytes={checkpoint}-"]
    assert r.net.transferred == 150_000 + r.image_len - checkpoint < 1.5 * r.image_len
    assert r.target_status()["status"] == "succeeded"
    rebooted.close()


def test_backoff_is_exponential_with_full_jitter_and_budget_bounded(demo_world: Demo) -> None:
    r = rig(demo_world, status=503)
    cfg = r.dev.config
    cfg.backoff_base, cfg.backoff_max, cfg.max_download_attempts = 1.0, 8.0, 6
    caps: list[float] = []

    class Recording(random.Random):
        def uniform(self, a: float, b: float) -> float:
            caps.append(b)
            return super().uniform(a, b)

    r.dev.power_on()
    assert r.dev.agent is not None
    r.dev.agent.rng = Recording(7)
    out = r.dev.run_once()

    # A 5xx storm is transient (issue 15): this cycle's budget ends in "waiting", not a failure.
    assert out.action == "retry"
    assert len(r.net.targets) == 6  # the budget: six attempts without progress
    assert caps == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped at backoff_max
    assert len(r.sleeps) == 5
    assert all(0 <= s <= c for s, c in zip(r.sleeps, caps, strict=True))
    assert len(set(r.sleeps)) == 5  # jittered, not a fixed schedule
    assert r.target_status()["status"] == "in_progress"
    assert r.target_status()["detail"].startswith("waiting: download: HTTP 503")
    assert r.last_event()["event"] == "waiting"
    assert r.dev.agent.journal.state.value == "downloading"  # resumed at the next poll


def test_missing_artifact_is_permanent_and_ends_at_once(demo_world: Demo) -> None:
    r = rig(demo_world)
    assert demo_world.ctx is not None
    assert demo_world.repo is not None
    name = next(n for n in demo_world.repo.targets().signed.targets if "2.0.0" in n)
    digest = demo_world.repo.targets().signed.targets[name].hashes["sha256"]
    demo_world.ctx.blobs.path(digest).unlink()

    out_list = r.dev.run_until_settled()

    assert out_list[0].action == "failed"
    assert [t.status for t in r.net.targets] == [404]
    assert r.sleeps == []  # a 404 is not retried
    assert r.dev.version == "1.0.0"
    assert r.target_status()["status"] == "failed"
    assert "HTTP 404" in r.last_event()["detail"]["reason"]


def test_cancelled_deployment_stops_the_download_and_is_reported(demo_world: Demo) -> None:
    d = demo_world
    holder: dict[str, int] = {}

    def cancel() -> None:
        assert d.ctx is not None
        d.ctx.store.cancel_deployment(holder["dep"])

    r = rig(d, cut_after=100_000, on_cut=cancel)
    holder["dep"] = r.dep_id
    outcomes = r.dev.run_until_settled()

    assert outcomes[0].action == "failed"
    assert len(r.net.targets) == 1  # asked before the retry, stopped: no second request
    assert r.sleeps == []
    assert r.dev.version == "1.0.0"
    env = r.dev.env.read()
    assert (env["boot_slot"], env["upgrade_available"]) == ("a", "0")
    assert r.target_status()["status"] == "cancelled"
    ev = r.last_event()
    assert ev["event"] == "failed"
    assert "cancelled" in ev["detail"]["reason"]
    # The device is not offered the cancelled deployment again.
    assert r.dev.run_once().action == "idle"
    assert len(r.net.targets) == 1


def test_cancellation_is_noticed_at_a_checkpoint_without_a_drop(demo_world: Demo) -> None:
    d = demo_world
    holder: dict[str, int] = {}

    def cancel_on_first_target() -> None:
        assert d.ctx is not None
        d.ctx.store.cancel_deployment(holder["dep"])

    r = rig(d, before_first_target=cancel_on_first_target)
    holder["dep"] = r.dep_id
    out = r.dev.run_until_settled()[0]

    assert out.action == "failed"
    assert len(r.net.targets) == 1
    # Stopped at the first checkpoint (64 KiB), long before the end of the image.
    assert r.net.targets[0].delivered < r.image_len
    assert r.dev.slots.path("b").stat().st_size < r.image_len
    assert r.target_status()["status"] == "cancelled"
    assert "cancelled" in r.last_event()["detail"]["reason"]


def test_poll_interval_jitter_stays_in_bounds_and_spreads(demo_world: Demo) -> None:
    r = rig(demo_world, deploy=False)
    cfg = r.dev.config
    cfg.poll_interval, cfg.poll_jitter = 300.0, 0.2
    r.dev.power_on()
    agent = r.dev.agent
    assert isinstance(agent, UpdateAgent)
    agent.rng = random.Random(1)
    delays = [agent.poll_delay() for _ in range(5000)]
    assert min(delays) >= 240.0
    assert max(delays) <= 360.0
    assert min(delays) < 245.0
    assert max(delays) > 355.0
    assert abs(sum(delays) / len(delays) - 300.0) < 3.0
    # Buckets of a fleet's first polls are roughly even: no stampede at one instant.
    buckets = [0] * 6
    for x in delays:
        buckets[min(5, int((x - 240.0) // 20))] += 1
    assert min(buckets) > 5000 / 6 * 0.8


# -- download_into against a scripted server ------------------------------------------------


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(base_url="https://mirror.test", transport=httpx.MockTransport(handler))


def test_download_into_caps_bytes_at_the_signed_length() -> None:
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        while sent < 64 << 20:
            sent += CHUNK
            yield b"\0" * CHUNK

    got = bytearray()
    with pytest.raises(DownloadError, match="more than the signed length") as exc:
        download_into(
            _client(lambda _r: httpx.Response(200, content=endless())),
            "/t",
            length=100_000,
            offset=0,
            write=got.extend,
        )
    assert exc.value.permanent
    assert len(got) <= 100_000
    assert sent <= 100_000 + 2 * CHUNK


def test_download_into_refuses_an_announced_oversize_body() -> None:
    with pytest.raises(DownloadError, match="announces") as exc:
        download_into(
            _client(lambda _r: httpx.Response(200, content=b"x" * 500)),
            "/t",
            length=100,
            offset=0,
            write=lambda _b: None,
        )
    assert exc.value.permanent


def test_download_into_skips_when_the_server_ignores_range() -> None:
    body = bytes(range(256)) * 4
    got = bytearray()
    progress = download_into(
        _client(lambda _r: httpx.Response(200, content=body)),
        "/t",
        length=len(body),
        offset=300,
        write=got.extend,
    )
    assert bytes(got) == body[300:]
    assert (progress.written, progress.received, progress.status) == (
        len(body) - 300,
        len(body),
        200,
    )


def test_download_into_refuses_a_range_that_starts_elsewhere() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["range"] == "bytes=300-"
        return httpx.Response(206, content=b"y" * 10, headers={"content-range": "bytes 0-9/1024"})

    with pytest.raises(DownloadError, match="Content-Range") as exc:
        download_into(_client(handler), "/t", length=1024, offset=300, write=lambda _b: None)
    assert not exc.value.permanent


@pytest.mark.parametrize(("seconds", "journaled"), [(0.0, True), (3600.0, False)])
def test_checkpoints_journal_progress_only_as_often_as_configured(
    demo_world: Demo, monkeypatch: pytest.MonkeyPatch, seconds: float, journaled: bool
) -> None:
    """Every checkpoint syncs the slot (and feeds the read-back); the journal records the
    progress only when ``checkpoint_journal_seconds`` passed since it last did (the agent's
    clock here does not move)."""
    from otaguard.agent.journal import JournalFile

    r = rig(demo_world)
    r.dev.config.checkpoint_journal_seconds = seconds
    r.dev.power_on()
    assert r.dev.agent is not None
    r.dev.agent.clock = lambda: 1000.0
    saved: list[int] = []
    real_save = JournalFile.save

    def save(self: Any, journal: Any) -> None:
        saved.append(journal.bytes_written)
        real_save(self, journal)

    monkeypatch.setattr(JournalFile, "save", save)
    outcomes = r.dev.run_until_settled()
    assert outcomes[-1].detail == "committed"
    partial = [b for b in saved if 0 < b < r.image_len]
    if journaled:
        assert partial == [64 * 1024 * i for i in range(1, len(partial) + 1)]
        assert len(partial) == (r.image_len - 1) // (64 * 1024)
    else:
        assert partial == []

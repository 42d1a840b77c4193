"""The agent refreshes the maker's TUF metadata before every install: a second deployment, of a
release published after the device's previous refresh, is found because the device fetched the
new timestamp, snapshot and targets first (its trusted copies advance to the server's)."""

from __future__ import annotations

from tuf.api.metadata import Metadata, Targets, Timestamp

from otaguard.demo import Demo


def _trusted_versions(d: Demo) -> tuple[int, int]:
    tuf_dir = d.fleet[0].config.tuf_dir
    ts = Metadata[Timestamp].from_file(str(tuf_dir / "timestamp.json"))
    targets = Metadata[Targets].from_file(str(tuf_dir / "targets.json"))
    return ts.signed.version, targets.signed.version


def test_second_deployment_sees_metadata_published_after_the_first(demo_world: Demo) -> None:
    d = demo_world
    d.devices = 1
    assert d.ctx is not None
    _, v1 = d.release("1.0.0")
    v2, _ = d.release("2.0.0")
    d.provision_fleet(v1)
    d.deploy(v2, "first")
    d.run()
    dev = d.fleet[0]
    assert (dev.version, dev.slot) == ("2.0.0", "b")
    first = _trusted_versions(d)
    published = d.ctx.repo.timestamp(), d.ctx.repo.targets()
    assert published[0] is not None
    assert published[1] is not None
    assert first == (published[0].signed.version, published[1].signed.version)

    v3, _ = d.release("3.0.0")  # new targets version, after the device's last refresh
    assert dev.agent is not None
    before = {p.name for p in dev.config.tuf_dir.iterdir()}
    d.deploy(v3, "second")
    d.run()
    assert (dev.version, dev.slot) == ("3.0.0", "a")
    second = _trusted_versions(d)
    ts, targets = d.ctx.repo.timestamp(), d.ctx.repo.targets()
    assert ts is not None
    assert targets is not None
    assert second == (ts.signed.version, targets.signed.version)
    assert second[1] == first[1] + 1
    assert before == {p.name for p in dev.config.tuf_dir.iterdir()}  # same files, new content

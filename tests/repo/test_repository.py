"""Maker-side and server-side repository rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from kit.repo import DictStore
from otaguard.crypto.keys import generate_signer
from otaguard.errors import ConflictError, RepositoryError, VerificationError
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.maker import MakerRepository
from otaguard.repo.online import OnlineRepository
from otaguard.repo.roles import ROOT, TARGETS


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    roots = [generate_signer() for _ in range(3)]
    targets = [generate_signer() for _ in range(2)]
    snap, ts = generate_signer(), generate_signer()
    repo = MakerRepository.init(
        tmp_path / "repo",
        root_keys=[s.public_key for s in roots],
        root_threshold=2,
        targets_keys=[s.public_key for s in targets],
        targets_threshold=2,
        snapshot_key=snap.public_key,
        timestamp_key=ts.public_key,
    )
    online = OnlineRepository(DictStore(), snap, ts)
    image = tmp_path / "fw.img"
    image.write_bytes(b"\x7fELF firmware v2" * 100)
    return repo, online, roots, targets, image


def test_root_needs_threshold_before_it_is_final(world) -> None:  # type: ignore[no-untyped-def]
    repo, online, roots, _targets, _image = world
    st = repo.sign(ROOT, roots[0])
    assert (len(st.signed_by), st.threshold, st.valid) == (1, 2, False)
    assert repo.root_history() == []
    with pytest.raises(VerificationError, match="threshold"):
        online.install_root((repo.metadata_dir / "root.json").read_bytes())
    st = repo.sign(ROOT, roots[2])
    assert st.valid
    assert [p.name for p in repo.root_history()] == ["1.root.json"]
    assert online.install_root(repo.root_history()[0].read_bytes()) == 1
    # Re-installing the same root is a no-op; a different v1 is a conflict.
    assert online.install_root(repo.root_history()[0].read_bytes()) == 1


def test_foreign_key_cannot_sign(world) -> None:  # type: ignore[no-untyped-def]
    repo, *_ = world
    with pytest.raises(RepositoryError, match="not a root key"):
        repo.sign(ROOT, generate_signer())
    with pytest.raises(RepositoryError, match="signs root and targets"):
        repo.sign("snapshot", generate_signer())


def test_targets_threshold_and_publish(world) -> None:  # type: ignore[no-untyped-def]
    repo, online, roots, targets, image = world
    for s in roots[:2]:
        repo.sign(ROOT, s)
    online.install_root(repo.root_history()[0].read_bytes())
    t = repo.add_target(
        image, "board/fw-2.img", ReleaseInfo("2.0", ("board",), 3, fixes=("CVE-2026-0001",))
    )
    assert t.custom == {
        "version": "2.0",
        "hardware": ["board"],
        "security_version": 3,
        "fixes": ["CVE-2026-0001"],
    }
    repo.sign(TARGETS, targets[0])
    with pytest.raises(RepositoryError, match="1 of 2 signatures"):
        repo.publish_bundle()
    with pytest.raises(VerificationError):
        online.publish_targets((repo.metadata_dir / "targets.json").read_bytes())
    repo.sign(TARGETS, targets[1])
    bundle = repo.publish_bundle()
    result = online.publish_targets(bundle["targets"])
    assert result.added == ("board/fw-2.img",)
    assert (result.targets_version, result.snapshot_version, result.timestamp_version) == (2, 1, 1)
    found = online.find_target("board/fw-2.img")
    assert found is not None
    assert found.length == image.stat().st_size
    # Re-publishing the identical bytes is a no-op; other content under the same version is
    # refused (TUF versions only grow).
    assert online.publish_targets(bundle["targets"]).added == ()
    same_version = repo.targets()
    same_version.signed.targets["board/fw-2.img"].custom["notes"] = "changed"
    same_version.signatures.clear()
    for s in targets:
        same_version.sign(s, append=True)
    with pytest.raises(ConflictError):
        online.publish_targets(same_version.to_bytes())


def test_released_target_is_immutable(world) -> None:  # type: ignore[no-untyped-def]
    repo, _online, _roots, _targets, image = world
    info = ReleaseInfo("2.0", ("board",))
    repo.add_target(image, "board/fw-2.img", info)
    with pytest.raises(RepositoryError, match="immutable"):
        repo.add_target(image, "board/fw-2.img", ReleaseInfo("2.1", ("board",)))
    with pytest.raises(RepositoryError, match="already released"):
        repo.add_target(image, "board/fw-2b.img", info)


def test_server_refuses_changed_target_content(world) -> None:  # type: ignore[no-untyped-def]
    repo, online, roots, targets, image = world
    for s in roots[:2]:
        repo.sign(ROOT, s)
    online.install_root(repo.root_history()[0].read_bytes())
    repo.add_target(image, "board/fw-2.img", ReleaseInfo("2.0", ("board",)))
    for s in targets:
        repo.sign(TARGETS, s)
    online.publish_targets(repo.publish_bundle()["targets"])
    # A new targets version that silently swaps the bytes behind an existing name:
    md = repo.targets()
    md.signed.targets["board/fw-2.img"].hashes["sha256"] = "0" * 64
    md.signed.version += 1
    md.signatures.clear()
    for s in targets:
        md.sign(s, append=True)
    with pytest.raises(RepositoryError, match="immutable"):
        online.publish_targets(md.to_bytes())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": ""}, "version"),
        ({"hardware": ()}, "hardware"),
        ({"security_version": -1}, "security version"),
        ({"fixes": ("not-a-cve",)}, "CVE"),
    ],
)
def test_release_info_validation(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    args = {"version": "1.0", "hardware": ("b",), **kwargs}
    with pytest.raises(RepositoryError, match=message):
        ReleaseInfo(**args)


@pytest.mark.parametrize("name", ["../etc/passwd", "/abs", "a b", "x/../../y", ""])
def test_bad_target_names_are_refused(world, name: str) -> None:  # type: ignore[no-untyped-def]
    repo, _o, _r, _t, image = world
    with pytest.raises(RepositoryError, match="invalid target name"):
        repo.add_target(image, name, ReleaseInfo("2.0", ("board",)))
    assert repo.targets().signed.version == 1


def test_threshold_bounds_on_init(tmp_path: Path) -> None:
    k = generate_signer().public_key
    with pytest.raises(RepositoryError, match="threshold"):
        MakerRepository.init(
            tmp_path,
            root_keys=[k],
            root_threshold=2,
            targets_keys=[k],
            targets_threshold=1,
            snapshot_key=k,
            timestamp_key=k,
        )
    with pytest.raises(RepositoryError, match="not an OTAGuard repository"):
        MakerRepository(tmp_path / "nothing")


def test_import_offline_signature(world) -> None:  # type: ignore[no-untyped-def]
    repo, _online, _roots, targets, image = world
    repo.add_target(image, "board/fw-2.img", ReleaseInfo("2.0", ("board",)))
    md = repo.targets()
    sig = targets[1].sign(md.signed_bytes)  # made "elsewhere" over the same bytes
    st = repo.add_signature(TARGETS, sig.to_dict())
    assert len(st.signed_by) == 1
    bad = targets[0].sign(b"something else").to_dict()
    with pytest.raises(RepositoryError, match="does not verify"):
        repo.add_signature(TARGETS, bad)
    assert (
        len(Metadata.from_bytes((repo.metadata_dir / "targets.json").read_bytes()).signatures) == 1
    )

"""The server's publishing rules (``repo/publish.py`` in front of ``OnlineRepository.publish``)
checked directly: metadata bytes and plain stand-ins for the artifact and release stores in,
a verdict out -- no HTTP, no database. Every refusal leaves nothing published or recorded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Targets

from kit.repo import DictStore
from otaguard.crypto.keys import generate_signer
from otaguard.errors import ConflictError, OTAGuardError, RepositoryError, VerificationError
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.maker import MakerRepository
from otaguard.repo.online import OnlineRepository
from otaguard.repo.publish import check_artifacts, publish_release, targets_of
from otaguard.repo.roles import ROOT, TARGETS

NAME = "board/fw-2.img"
IMAGE = b"\x7fELF firmware v2" * 100


@dataclass
class Artifacts:
    """Uploaded artifacts: sha256 -> length."""

    sizes: dict[str, int] = field(default_factory=dict)

    def upload(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.sizes[digest] = len(data)
        return digest

    def exists(self, digest: str) -> bool:
        return digest in self.sizes

    def size(self, digest: str) -> int:
        return self.sizes[digest]


@dataclass
class Catalog:
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)

    def upsert_release(self, target_name: str, **fields: Any) -> None:
        self.releases[target_name] = fields


@dataclass
class World:
    maker: MakerRepository
    online: OnlineRepository
    targets_keys: list[Signer]
    artifacts: Artifacts
    catalog: Catalog
    image: Path

    def signed_targets(self, *signers: Signer) -> bytes:
        for s in signers or self.targets_keys:
            self.maker.sign(TARGETS, s)
        return (self.maker.metadata_dir / "targets.json").read_bytes()

    def resign(self, md: Metadata[Targets]) -> bytes:
        md.signatures.clear()
        for s in self.targets_keys:
            md.sign(s, append=True)
        return md.to_bytes()

    def publish(self, data: bytes) -> Any:
        return publish_release(
            self.online, {TARGETS: data}, artifacts=self.artifacts, catalog=self.catalog
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    roots = [generate_signer() for _ in range(2)]
    targets = [generate_signer() for _ in range(2)]
    snap, ts = generate_signer(), generate_signer()
    maker = MakerRepository.init(
        tmp_path / "repo",
        root_keys=[s.public_key for s in roots],
        root_threshold=2,
        targets_keys=[s.public_key for s in targets],
        targets_threshold=2,
        snapshot_key=snap.public_key,
        timestamp_key=ts.public_key,
    )
    for s in roots:
        maker.sign(ROOT, s)
    online = OnlineRepository(DictStore(), snap, ts)
    online.install_root(maker.root_history()[0].read_bytes())
    image = tmp_path / "fw.img"
    image.write_bytes(IMAGE)
    maker.add_target(image, NAME, ReleaseInfo("2.0", ("board",), 3))
    return World(maker, online, targets, Artifacts(), Catalog(), image)


def assert_nothing_published(world: World) -> None:
    assert world.online.targets() is None
    assert world.catalog.releases == {}


def test_publication_with_uploaded_artifact_is_accepted_and_recorded(world: World) -> None:
    digest = world.artifacts.upload(IMAGE)
    result = world.publish(world.signed_targets())
    assert result.added == (NAME,)
    assert world.online.find_target(NAME) is not None
    assert world.catalog.releases == {
        NAME: {
            "version": "2.0",
            "hardware": ["board"],
            "security_version": 3,
            "sha256": digest,
            "length": len(IMAGE),
            "custom": {"version": "2.0", "hardware": ["board"], "security_version": 3},
        }
    }


def test_missing_artifact_is_refused(world: World) -> None:
    with pytest.raises(RepositoryError, match="has not been uploaded"):
        world.publish(world.signed_targets())
    assert_nothing_published(world)


def test_artifact_of_another_length_is_refused(world: World) -> None:
    digest = world.artifacts.upload(IMAGE)
    world.artifacts.sizes[digest] = len(IMAGE) - 1  # a truncated upload under the same name
    with pytest.raises(RepositoryError, match="has not been uploaded"):
        world.publish(world.signed_targets())
    assert_nothing_published(world)


def test_targets_below_the_signature_threshold_are_refused(world: World) -> None:
    world.artifacts.upload(IMAGE)
    with pytest.raises(VerificationError, match="threshold"):
        world.publish(world.signed_targets(world.targets_keys[0]))
    assert_nothing_published(world)


def test_version_not_newer_than_the_published_one_is_refused(world: World) -> None:
    world.artifacts.upload(IMAGE)
    world.publish(world.signed_targets())
    published = dict(world.catalog.releases)
    md = world.maker.targets()
    md.signed.targets[NAME].custom["notes"] = "same version, other content"
    with pytest.raises(ConflictError, match="not newer"):
        world.publish(world.resign(md))
    md.signed.version -= 1
    with pytest.raises(ConflictError, match="not newer"):
        world.publish(world.resign(md))
    assert world.catalog.releases == published


def test_changed_published_target_is_refused(world: World) -> None:
    world.artifacts.upload(IMAGE)
    world.publish(world.signed_targets())
    other = b"other firmware behind the same name"
    md = world.maker.targets()
    md.signed.targets[NAME].hashes["sha256"] = world.artifacts.upload(other)
    md.signed.targets[NAME].length = len(other)
    md.signed.version += 1
    with pytest.raises(RepositoryError, match="immutable"):
        world.publish(world.resign(md))
    found = world.online.find_target(NAME)
    assert found is not None
    assert found.length == len(IMAGE)


def test_target_without_release_information_is_refused(world: World) -> None:
    world.artifacts.upload(IMAGE)
    md = world.maker.targets()
    md.signed.targets[NAME].custom.pop("version")
    with pytest.raises(RepositoryError, match="custom metadata"):
        world.publish(world.resign(md))
    assert_nothing_published(world)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"not json", "not valid targets metadata"), (b"{}", "not valid targets metadata")],
)
def test_unreadable_metadata_is_refused(world: World, data: bytes, message: str) -> None:
    with pytest.raises(RepositoryError, match=message):
        world.publish(data)
    assert_nothing_published(world)


def test_root_metadata_in_place_of_targets_is_refused(world: World) -> None:
    root = world.maker.root_history()[0].read_bytes()
    with pytest.raises(RepositoryError, match="expected targets metadata"):
        targets_of({TARGETS: root})


def test_check_artifacts_names_the_first_missing_target(world: World) -> None:
    targets = targets_of({TARGETS: world.signed_targets()})
    assert list(targets) == [NAME]
    with pytest.raises(OTAGuardError, match=NAME):
        check_artifacts(targets, Artifacts())
    artifacts = Artifacts()
    artifacts.upload(IMAGE)
    check_artifacts(targets, artifacts)  # control: the uploaded artifact passes


# -- delta targets (repo/delta_targets.py) -------------------------------------------------------
SOURCE_SHA = hashlib.sha256(b"the image devices run now").hexdigest()
PATCH = b"a small patch"


def _with_delta(world: World, full: Any, *, patch: bytes = PATCH) -> bytes:
    """targets with a delta target (rebuilding ``full``) added and re-signed; patch uploaded."""
    from otaguard.repo.delta_targets import make_delta_target

    world.artifacts.upload(IMAGE)
    world.artifacts.upload(patch)
    delta = make_delta_target(
        full,
        source_sha256=SOURCE_SHA,
        source_length=1000,
        patch_sha256=hashlib.sha256(patch).hexdigest(),
        patch_length=len(patch),
    )
    md = Metadata[Targets].from_bytes(world.signed_targets())
    md.signed.targets[delta.path] = delta
    return world.resign(md)


def _full(world: World) -> Any:
    return world.maker.targets_metadata(TARGETS).signed.targets[NAME]


def test_delta_of_a_full_image_in_the_same_role_is_published_but_is_no_release(
    world: World,
) -> None:
    result = world.publish(_with_delta(world, _full(world)))
    delta_name = f"{NAME}.from-{SOURCE_SHA[:16]}.otadelta"
    assert set(result.added) == {NAME, delta_name}
    found = world.online.find_target(delta_name)
    assert found is not None
    assert found.custom["delta"]["target_path"] == NAME
    assert set(world.catalog.releases) == {NAME}  # a delta is offered with a release, not deployed


def test_delta_whose_full_image_is_not_in_the_role_is_refused(world: World) -> None:
    from tuf.api.metadata import TargetFile

    elsewhere = TargetFile.from_data("board/fw-9.img", IMAGE, ["sha256"])
    elsewhere.unrecognized_fields["custom"] = ReleaseInfo("9", ("board",)).to_custom()
    with pytest.raises(RepositoryError, match="not in the same role"):
        world.publish(_with_delta(world, elsewhere))
    assert_nothing_published(world)


def test_delta_that_rebuilds_another_image_is_refused(world: World) -> None:
    md = Metadata[Targets].from_bytes(_with_delta(world, _full(world)))
    (delta,) = [t for n, t in md.signed.targets.items() if n != NAME]
    delta.unrecognized_fields["custom"]["delta"]["target_sha256"] = "0" * 64
    with pytest.raises(RepositoryError, match="do not match"):
        world.publish(world.resign(md))
    assert_nothing_published(world)


def test_delta_not_smaller_than_its_full_image_is_refused(world: World) -> None:
    with pytest.raises(RepositoryError, match="not smaller"):
        world.publish(_with_delta(world, _full(world), patch=IMAGE + b"!"))
    assert_nothing_published(world)


def test_malformed_delta_metadata_is_refused(world: World) -> None:
    md = Metadata[Targets].from_bytes(_with_delta(world, _full(world)))
    (delta,) = [t for n, t in md.signed.targets.items() if n != NAME]
    delta.unrecognized_fields["custom"]["delta"]["format"] = "bsdiff"
    with pytest.raises(RepositoryError, match="format"):
        world.publish(world.resign(md))
    assert_nothing_published(world)

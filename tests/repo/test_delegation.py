"""Delegated targets roles and hashed bins: the maker's tree, the server's checks (threshold of
the delegator's keys, delegated paths, versions), snapshot listing every targets file, and a
simulated device updating to a target that lives in a delegated role's hashed bin."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Snapshot, SuccinctRoles, TargetFile, Targets

from kit.repo import DictStore
from otaguard.crypto.keys import generate_signer
from otaguard.demo import HARDWARE, Demo
from otaguard.device.image import build_image
from otaguard.errors import ConflictError, RepositoryError, VerificationError
from otaguard.repo import delegation, maker_delegation
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.maker import MakerRepository
from otaguard.repo.online import OnlineRepository
from otaguard.repo.roles import ROOT, TARGETS


@dataclass
class World:
    repo: MakerRepository
    online: OnlineRepository
    store: DictStore
    targets_keys: list[CryptoSigner]
    team: list[CryptoSigner]
    tmp: Path

    def image(self, name: str, content: bytes) -> Path:
        path = self.tmp / name.replace("/", "_")
        path.write_bytes(content)
        return path

    def sign_top(self) -> None:
        for s in self.targets_keys:
            self.repo.sign(TARGETS, s)

    def sign_team(self, signers: list[CryptoSigner] | None = None) -> None:
        for s in signers or self.team:
            maker_delegation.sign_delegated(self.repo, s)

    def publish(self) -> None:
        bundle = self.repo.publish_bundle()
        published = self.online.snapshot()
        have = {} if published is None else published.signed.meta

        def newer(role: str, data: bytes) -> bool:
            meta = have.get(f"{role}.json")
            return meta is None or Metadata.from_bytes(data).signed.version > meta.version

        roles = {TARGETS: bundle["targets"], **bundle["delegations"]}
        self.online.publish({r: d for r, d in roles.items() if newer(r, d)})


@pytest.fixture
def world(tmp_path: Path) -> World:
    roots = [generate_signer() for _ in range(2)]
    top = [generate_signer() for _ in range(2)]
    snap, ts = generate_signer(), generate_signer()
    repo = MakerRepository.init(
        tmp_path / "repo",
        root_keys=[s.public_key for s in roots],
        root_threshold=2,
        targets_keys=[s.public_key for s in top],
        targets_threshold=2,
        snapshot_key=snap.public_key,
        timestamp_key=ts.public_key,
    )
    for s in roots:
        repo.sign(ROOT, s)
    store = DictStore()
    online = OnlineRepository(store, snap, ts)
    online.install_root(repo.root_history()[0].read_bytes())
    team = [generate_signer() for _ in range(2)]
    return World(repo, online, store, top, team, tmp_path)


def _delegate_team(w: World, threshold: int = 2) -> None:
    maker_delegation.delegate(
        w.repo,
        "sim-board",
        keys=[s.public_key for s in w.team],
        threshold=threshold,
        paths=["sim-board/*"],
    )
    w.sign_top()
    w.sign_team()  # the role's empty version 1


def test_team_signs_only_its_own_paths(world: World) -> None:
    w = world
    _delegate_team(w)
    t = w.repo.add_target(
        w.image("a", b"sim firmware 1"), "sim-board/fw-1.img", ReleaseInfo("1", (HARDWARE,))
    )
    # add_target put it into the delegated role, not into top-level targets
    assert "sim-board/fw-1.img" in w.repo.targets_metadata("sim-board").signed.targets
    assert w.repo.targets().signed.targets == {}
    # the maker's keys are not the team's: they cannot sign the team's role
    with pytest.raises(RepositoryError, match="not a sim-board key"):
        w.repo.sign("sim-board", w.targets_keys[0])
    w.sign_team()
    status = {st.role: st for st in w.repo.status()}
    assert status["sim-board"].valid
    w.publish()
    found = w.online.find_target("sim-board/fw-1.img")
    assert found == t
    snap = w.online.snapshot()
    assert snap is not None
    assert set(snap.signed.meta) == {"targets.json", "sim-board.json"}
    # A name outside the team's paths stays in top-level targets (the team cannot sign it).
    assert delegation.responsible_role(w.repo._load_role, "other-board/x.img") == TARGETS


def test_server_refuses_delegated_role_below_threshold(world: World) -> None:
    w = world
    _delegate_team(w)
    w.publish()
    w.repo.add_target(w.image("a", b"fw"), "sim-board/fw-1.img", ReleaseInfo("1", (HARDWARE,)))
    w.sign_team(w.team[:1])  # one of two team keys
    data = (w.repo.metadata_dir / "sim-board.json").read_bytes()
    before = dict(w.store.files)
    with pytest.raises(VerificationError, match="threshold"):
        w.online.publish({"sim-board": data})
    assert w.store.files == before  # nothing stored, no new snapshot
    # Signed by the maker's top-level targets keys instead of the team's: still refused.
    md = Metadata[Targets].from_bytes(data)
    md.signatures.clear()
    for s in w.targets_keys:
        md.sign(s, append=True)
    with pytest.raises(VerificationError, match="threshold"):
        w.online.publish({"sim-board": md.to_bytes()})
    assert w.online.find_target("sim-board/fw-1.img") is None


def test_server_refuses_targets_outside_the_delegated_paths(world: World) -> None:
    w = world
    _delegate_team(w)
    w.publish()
    # The team (holding both of its keys) tries to sign firmware of another product line.
    md = w.repo.targets_metadata("sim-board")
    other = TargetFile.from_data("other-board/fw.img", b"not ours", ["sha256"])
    other.unrecognized_fields["custom"] = ReleaseInfo("9", ("other-board",)).to_custom()
    md.signed.targets[other.path] = other
    md.signed.version += 1
    for s in w.team:
        md.sign(s, append=True)
    with pytest.raises(VerificationError, match="outside the paths"):
        w.online.publish({"sim-board": md.to_bytes()})
    with pytest.raises(VerificationError, match="outside the paths"):
        w.repo.add_target(
            w.image("o", b"x"), "other-board/fw.img", ReleaseInfo("9", ("x",)), role="sim-board"
        )
    # and a role nobody delegated is refused outright
    rogue = Metadata(Targets())
    rogue.sign(w.team[0])
    with pytest.raises(RepositoryError, match="not delegated"):
        w.online.publish({"rogue-team": rogue.to_bytes()})


def test_delegated_role_versions_only_grow(world: World) -> None:
    w = world
    _delegate_team(w)
    w.repo.add_target(w.image("a", b"fw1"), "sim-board/fw-1.img", ReleaseInfo("1", (HARDWARE,)))
    w.sign_team()
    w.publish()
    old = (w.repo.metadata_dir / "sim-board.json").read_bytes()
    w.repo.add_target(w.image("b", b"fw2"), "sim-board/fw-2.img", ReleaseInfo("2", (HARDWARE,)))
    w.sign_team()
    w.publish()
    with pytest.raises(ConflictError, match="not newer"):
        w.online.publish({"sim-board": old})
    assert w.online.find_target("sim-board/fw-2.img") is not None


def test_hashed_bins_spread_targets_and_snapshot_lists_every_bin(world: World) -> None:
    w = world
    _delegate_team(w)
    bins = maker_delegation.delegate_hashed_bins(
        w.repo, "sim-board", keys=[w.team[0].public_key], threshold=1, bit_length=3
    )
    assert len(bins) == 8
    assert bins[0] == "sim-board-bins-0"
    names = [f"sim-board/fw-{i}.img" for i in range(12)]
    for i, name in enumerate(names):
        w.repo.add_target(w.image(name, f"fw {i}".encode()), name, ReleaseInfo(str(i), ("x",)))
    w.sign_team()
    assert all(st.valid for st in w.repo.status())
    w.publish()
    succinct = w.repo.targets_metadata("sim-board").signed.delegations
    assert succinct is not None
    assert isinstance(succinct.succinct_roles, SuccinctRoles)
    for name in names:
        role = succinct.succinct_roles.get_role_for_target(name)
        assert name in w.repo.targets_metadata(role).signed.targets
        assert w.online.find_target(name) is not None
    snap = w.online.snapshot()
    assert snap is not None
    assert isinstance(snap.signed, Snapshot)
    assert set(snap.signed.meta) == {"targets.json", "sim-board.json"} | {f"{b}.json" for b in bins}
    # a bin holding a target that hashes into another bin is refused
    name = names[0]
    wrong = next(b for b in bins if b != succinct.succinct_roles.get_role_for_target(name))
    md = w.repo.targets_metadata(wrong)
    md.signed.targets[name] = w.repo.targets_metadata(
        succinct.succinct_roles.get_role_for_target(name)
    ).signed.targets[name]
    md.signed.version += 1
    md.sign(w.team[0])
    with pytest.raises(VerificationError, match="outside the paths"):
        w.online.publish({wrong: md.to_bytes()})


def test_suggested_bins_grow_with_the_catalogue() -> None:
    sizes = [delegation.suggest_bit_length(n) for n in (10, 10_000, 100_000)]
    assert sizes == sorted(sizes)
    assert sizes[0] >= 1
    assert 2 ** sizes[2] < 100_000 // 10  # many targets per bin, not one bin per target


def test_bad_delegations_are_refused(world: World) -> None:
    w = world
    keys = [w.team[0].public_key]
    with pytest.raises(RepositoryError, match="invalid delegated role name"):
        maker_delegation.delegate(w.repo, "snapshot", keys=keys, threshold=1, paths=["x/*"])
    with pytest.raises(RepositoryError, match="threshold"):
        maker_delegation.delegate(w.repo, "team", keys=keys, threshold=2, paths=["x/*"])
    with pytest.raises(RepositoryError, match="relative path"):
        maker_delegation.delegate(w.repo, "team", keys=keys, threshold=1, paths=["/abs/*"])
    maker_delegation.delegate(w.repo, "team", keys=keys, threshold=1, paths=["x/*"])
    with pytest.raises(RepositoryError, match="already exists"):
        maker_delegation.delegate(w.repo, "team", keys=keys, threshold=1, paths=["y/*"])
    with pytest.raises(RepositoryError, match="already delegates"):
        maker_delegation.delegate_hashed_bins(w.repo, TARGETS, keys=keys, threshold=1, bit_length=2)


# -- end to end: a simulated device over the real server --------------------------------------
def test_device_updates_to_a_target_in_a_delegated_hashed_bin(demo_world: Demo) -> None:
    d = demo_world
    assert d.repo is not None
    assert d.api is not None
    _, v1 = d.release("1.0.0")  # top-level targets, as before any delegation
    team = [generate_signer(), generate_signer()]
    maker_delegation.delegate(
        d.repo,
        "sim-board-team",
        keys=[s.public_key for s in team],
        threshold=2,
        paths=[f"{HARDWARE}/*"],
    )
    for s in d.maker_signers[TARGETS]:
        d.repo.sign(TARGETS, s)
    bins = maker_delegation.delegate_hashed_bins(
        d.repo,
        "sim-board-team",
        keys=[s.public_key for s in team],
        threshold=2,
        bit_length=2,
    )
    image = build_image("2.0.0", HARDWARE, security_version=1, payload_size=32 * 1024)
    name = f"{HARDWARE}/firmware-2.0.0.img"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image"
        path.write_bytes(image)
        d.repo.add_target(path, name, ReleaseInfo("2.0.0", (HARDWARE,), 1))
    for s in team:
        maker_delegation.sign_delegated(d.repo, s)
    result = d.api.publish(d.repo)
    assert result["added"] == [name]
    assert set(result["roles"]) == {"targets", "sim-board-team", *bins}

    d.provision_fleet(v1)
    dep_id = d.deploy(name)
    runs = d.run()
    for r in runs:
        assert not r.error
        assert (r.version_after, r.slot_after) == ("2.0.0", "b")
    assert {t["status"] for t in d.api.deployment_devices(dep_id)} == {"succeeded"}
    # The stock TUF client walked targets -> team role -> the one bin holding the target.
    bin_name = delegation.delegation_chain(d.repo._load_role, bins[0])[-1].metadata.signed
    assert bin_name.delegations is not None
    assert bin_name.delegations.succinct_roles is not None
    holder = bin_name.delegations.succinct_roles.get_role_for_target(name)
    cached = {p.name for p in d.fleet[0].config.tuf_dir.iterdir()}
    assert {"targets.json", "sim-board-team.json", f"{holder}.json"} <= cached
    assert not ({f"{b}.json" for b in bins if b != holder} & cached)  # other bins not fetched
    # The server's release list knows the delegated target too.
    release = d.api.http.get(f"/api/v1/releases/{name}").json()
    assert (release["version"], release["length"]) == ("2.0.0", len(image))


def test_publish_api_checks_delegated_roles(demo_world: Demo) -> None:
    """``PUT /api/v1/repository/delegations/{role}`` and the batch endpoint refuse a role
    below threshold, a target outside the delegated paths and malformed bodies (422, nothing
    stored); a properly signed role is accepted under a new snapshot."""
    d = demo_world
    assert d.repo is not None
    assert d.api is not None
    assert d.ctx is not None
    team = [generate_signer(), generate_signer()]
    maker_delegation.delegate(
        d.repo, "team", keys=[s.public_key for s in team], threshold=2, paths=["team/*"]
    )
    for s in d.maker_signers[TARGETS]:
        d.repo.sign(TARGETS, s)
    for s in team:
        maker_delegation.sign_delegated(d.repo, s)
    d.api.publish(d.repo)
    http = d.api.http

    def put(md: Metadata[Targets]) -> httpx.Response:
        return http.put("/api/v1/repository/delegations/team", content=md.to_bytes())

    md = d.repo.targets_metadata("team")
    md.signed.version += 1
    md.signatures.clear()
    md.sign(team[0])
    r = put(md)
    assert r.status_code == 422
    assert "signed by 1/2 keys" in r.json()["detail"]
    image = b"team image"
    digest = hashlib.sha256(image).hexdigest()
    assert http.put(f"/api/v1/artifacts/{digest}", content=image).status_code == 200
    stray = TargetFile.from_data("elsewhere/fw.img", image, ["sha256"])
    stray.unrecognized_fields["custom"] = ReleaseInfo("1", ("x",)).to_custom()
    md.signed.targets[stray.path] = stray
    md.signatures.clear()
    for s in team:
        md.sign(s, append=True)
    r = put(md)
    assert r.status_code == 422
    assert "outside the paths" in r.json()["detail"]
    bad = http.put("/api/v1/repository/delegations", json={"roles": []})
    assert bad.status_code == 422
    snapshot_before = d.ctx.repo.snapshot()
    assert snapshot_before is not None
    del md.signed.targets[stray.path]
    ok = TargetFile.from_data("team/fw.img", image, ["sha256"])
    ok.unrecognized_fields["custom"] = ReleaseInfo("1", ("x",)).to_custom()
    md.signed.targets[ok.path] = ok
    md.signatures.clear()
    for s in team:
        md.sign(s, append=True)
    r = put(md)
    assert r.status_code == 200, r.text
    assert r.json()["added"] == ["team/fw.img"]
    assert r.json()["roles"] == {"team": md.signed.version}
    snap = d.ctx.repo.snapshot()
    assert snap is not None
    assert snap.signed.version == snapshot_before.signed.version + 1
    assert snap.signed.meta["team.json"].version == md.signed.version
    assert d.ctx.repo.find_target("team/fw.img") == ok

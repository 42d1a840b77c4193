"""Key rotation and revocation (repo/rotation.py and `otaguard keys rotate|revoke`): TUF's rule
that root N+1 needs a threshold of root N's keys and of its own, on the maker and the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner
from typer.testing import CliRunner

from kit.repo import DictStore
from otaguard.cli.main import app
from otaguard.crypto.keys import generate_signer, public_key_json, save_keypair
from otaguard.errors import RepositoryError, VerificationError
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.maker import MakerRepository
from otaguard.repo.online import OnlineRepository
from otaguard.repo.roles import ROOT, TARGETS
from otaguard.repo.rotation import RoleChange, resolve_keyid, revoke, rotate, rotate_role


class World:
    def __init__(self, tmp: Path) -> None:
        self.roots = [generate_signer() for _ in range(3)]
        self.targets = [generate_signer() for _ in range(2)]
        snap, ts = generate_signer(), generate_signer()
        self.repo = MakerRepository.init(
            tmp / "repo",
            root_keys=[s.public_key for s in self.roots],
            root_threshold=2,
            targets_keys=[s.public_key for s in self.targets],
            targets_threshold=2,
            snapshot_key=snap.public_key,
            timestamp_key=ts.public_key,
        )
        self.online = OnlineRepository(DictStore(), snap, ts)
        for s in self.roots[:2]:
            self.repo.sign(ROOT, s)
        self.online.install_root(self.repo.root_history()[0].read_bytes())
        image = tmp / "fw.img"
        image.write_bytes(b"firmware" * 64)
        self.repo.add_target(image, "board/fw-1.img", ReleaseInfo("1.0", ("board",)))
        for s in self.targets:
            self.repo.sign(TARGETS, s)
        self.online.publish_targets(self.repo.publish_bundle()["targets"])

    def draft_bytes(self) -> bytes:
        return (self.repo.metadata_dir / "root.json").read_bytes()


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def test_root_rotation_needs_old_and_new_thresholds(w: World) -> None:
    new_root = generate_signer()
    result = rotate_role(
        w.repo, ROOT, add=[new_root.public_key], remove=[w.roots[0].public_key.keyid]
    )
    assert result.root_version == 2
    assert result.targets_version is None
    draft = w.repo.root().signed
    assert w.roots[0].public_key.keyid not in draft.roles[ROOT].keyids
    assert w.roots[0].public_key.keyid not in draft.keys  # no longer used by any role
    assert new_root.public_key.keyid in draft.roles[ROOT].keyids

    # Only new-root keys: its own threshold is met, the previous root's is not.
    w.repo.sign(ROOT, w.roots[2])
    w.repo.sign(ROOT, new_root)
    own, previous = w.repo.root_status()
    assert (own.valid, previous.valid) == (True, False)
    assert previous.judged_by == "root v1 keys"
    assert [p.name for p in w.repo.root_history()] == ["1.root.json"]
    with pytest.raises(RepositoryError, match=r"root v2 .*1 of 2 signatures"):
        w.repo.publish_bundle()
    with pytest.raises(VerificationError, match="previous root"):
        w.online.install_root(w.draft_bytes())

    # The removed (old) root key still vouches for the transition, as TUF requires.
    w.repo.sign(ROOT, w.roots[0])
    assert all(st.valid for st in w.repo.root_status())
    assert [p.name for p in w.repo.root_history()] == ["1.root.json", "2.root.json"]
    assert w.online.install_root(w.repo.root_history()[1].read_bytes()) == 2
    # A removed root key can no longer sign anything after v2 (it is not in v2 or v3's keys).
    rotate_role(w.repo, ROOT, threshold=3)
    with pytest.raises(RepositoryError, match="not a root key"):
        w.repo.sign(ROOT, w.roots[0])


def test_new_keys_alone_cannot_make_a_root_the_server_accepts(w: World) -> None:
    """An attacker who adds their own keys to a root needs the old keys' threshold too."""
    evil = [generate_signer() for _ in range(2)]
    rotate(
        w.repo,
        {ROOT: RoleChange(tuple(s.public_key for s in evil), (), 2)},
    )
    md = w.repo.root()
    for s in evil:
        md.sign(s, append=True)
    md.sign(w.roots[0], append=True)  # one old key: below the old threshold of 2
    with pytest.raises(VerificationError, match="previous root"):
        w.online.install_root(md.to_bytes())


def test_revoking_a_targets_key_requires_resigning_targets(w: World) -> None:
    stolen = w.targets[0]
    fresh = generate_signer()
    with pytest.raises(RepositoryError, match="1 key\\(s\\) for a threshold of 2"):
        revoke(w.repo, stolen.public_key.keyid[:10])
    assert w.repo.root().signed.version == 1  # nothing half-done
    result = revoke(w.repo, stolen.public_key.keyid[:10], [fresh.public_key])
    assert result.removed == {TARGETS: (stolen.public_key.keyid,)}
    assert result.targets_version == 3
    targets = w.repo.targets()
    assert (targets.signed.version, targets.signatures) == (3, {})
    for s in w.roots[:2]:
        w.repo.sign(ROOT, s)
    with pytest.raises(RepositoryError, match="not a targets key"):
        w.repo.sign(TARGETS, stolen)
    w.repo.sign(TARGETS, w.targets[1])
    w.repo.sign(TARGETS, fresh)
    bundle = w.repo.publish_bundle()
    assert w.online.install_root(bundle["roots"][-1]) == 2
    assert w.online.publish_targets(bundle["targets"]).targets_version == 3

    # Targets v4 signed with the revoked key (and a current one) no longer meets threshold.
    forged = w.repo.targets()
    forged.signed.version = 4
    forged.signatures.clear()
    forged.sign(stolen, append=True)
    forged.sign(w.targets[1], append=True)
    with pytest.raises(VerificationError, match="threshold"):
        w.online.publish_targets(forged.to_bytes())


def test_rotation_input_errors(w: World) -> None:
    k = generate_signer().public_key
    with pytest.raises(RepositoryError, match="unknown role"):
        rotate_role(w.repo, "bogus", add=[k])
    with pytest.raises(RepositoryError, match="nothing to change"):
        rotate_role(w.repo, TARGETS)
    with pytest.raises(RepositoryError, match="already a targets key"):
        rotate_role(w.repo, TARGETS, add=[w.targets[0].public_key])
    with pytest.raises(RepositoryError, match="no key"):
        rotate_role(w.repo, TARGETS, remove=["00000000"])
    with pytest.raises(RepositoryError, match="at least 8"):
        rotate_role(w.repo, TARGETS, remove=["abc"])
    with pytest.raises(RepositoryError, match="threshold of 3"):
        rotate_role(w.repo, TARGETS, threshold=3)
    assert w.repo.root().signed.version == 1
    rotate_role(w.repo, TARGETS, add=[k])
    with pytest.raises(RepositoryError, match="still below threshold"):
        rotate_role(w.repo, TARGETS, add=[generate_signer().public_key])


def test_resolve_keyid_ambiguity() -> None:
    with pytest.raises(RepositoryError, match="ambiguous"):
        resolve_keyid("abcdef00", ["abcdef0011", "abcdef0022"])
    assert resolve_keyid("ABCDEF0011", ["abcdef0011", "abcdef0022"]) == "abcdef0011"


# -- through the CLI --------------------------------------------------------------------------
def _cli(*args: Any) -> Any:
    return CliRunner(env={"PW": "passphrase!"}).invoke(app, [str(a) for a in args])


def _keyfile(signer: CryptoSigner, d: Path, name: str) -> Path:
    save_keypair(signer, d, name, b"passphrase!")
    return d / f"{name}.key"


def test_cli_rotate_and_revoke(w: World, tmp_path: Path) -> None:
    d = tmp_path / "keys"
    new_pub = d / "t3.pub.json"
    new_signer = generate_signer()
    d.mkdir()
    new_pub.write_text(public_key_json(new_signer.public_key))
    stolen = w.targets[0].public_key.keyid
    r = _cli("keys", "rotate", "targets", "--repo", w.repo.path, "--remove-key", stolen[:12])
    assert r.exit_code == 2
    assert r.stderr.strip().startswith("error: targets would have 1 key(s)")
    r = _cli(
        "keys",
        "rotate",
        "targets",
        "--repo",
        w.repo.path,
        "--new-key",
        new_pub,
        "--remove-key",
        stolen[:12],
    )
    assert r.exit_code == 0, r.output
    assert "root v2 staged" in r.output
    assert "targets v3 staged" in r.output
    root = json.loads((w.repo.metadata_dir / "root.json").read_text())["signed"]
    assert stolen not in root["roles"]["targets"]["keyids"]
    # Sign root v2 through the CLI with two old root keys (also the new root's: unchanged).
    for i in (0, 1):
        key = _keyfile(w.roots[i], d, f"root-{i}")
        r = _cli(
            "release", "sign", w.repo.path, "--role", "root", "--key", key, "--passphrase-env", "PW"
        )
        assert r.exit_code == 0, r.output
    assert "root v2 (by root v1 keys): 2/2 signatures, valid" in r.output
    status = _cli("repo", "status", w.repo.path)
    assert "root (by root v1 keys)" in status.output

    r = _cli("keys", "revoke", "deadbeefdeadbeef", "--repo", w.repo.path)
    assert r.exit_code == 2
    assert "no key deadbeefdeadbeef" in r.stderr
    r = _cli("keys", "rotate", "targets", "--repo", w.repo.path, "--new-key", tmp_path / "none")
    assert r.exit_code == 2
    assert "cannot read public key" in r.stderr
    revoke_root = _cli("keys", "revoke", w.roots[2].public_key.keyid, "--repo", w.repo.path)
    assert revoke_root.exit_code == 0, revoke_root.output
    assert "root v3 staged" in revoke_root.output


def test_online_key_rotation_and_root_only_republish(w: World) -> None:
    """Rotating the (online) timestamp key: the server restarted with the new key re-signs
    snapshot and timestamp as soon as it installs the root naming that key; re-publishing the
    unchanged targets after a root-only rotation is a no-op, not a conflict."""
    new_ts = generate_signer()
    old_ts = w.online.timestamp()
    assert old_ts is not None
    rotate_role(
        w.repo,
        "timestamp",
        add=[new_ts.public_key],
        remove=[w.online.timestamp_signer.public_key.keyid],
    )
    for s in w.roots[:2]:
        w.repo.sign(ROOT, s)
    server = OnlineRepository(w.online.store, w.online.snapshot_signer, new_ts)  # restarted
    bundle = w.repo.publish_bundle()
    assert server.install_root(bundle["roots"][-1]) == 2
    ts = server.timestamp()
    assert ts is not None
    assert ts.signed.version == old_ts.signed.version + 1
    root = server.root()
    assert root is not None
    root.verify_delegate("timestamp", ts)  # signed by the new key, as root v2 requires
    again = server.publish_targets(bundle["targets"])
    assert (again.targets_version, again.added) == (2, ())
    assert server.timestamp() == ts

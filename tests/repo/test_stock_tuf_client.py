"""Any TUF client can check our work: the stock ``tuf.ngclient.Updater`` with its default
urllib3 fetcher, given only the maker's trusted root.json and the server's CA (through the
standard ``SSL_CERT_FILE``), refreshes from ``/tuf/metadata/``, walks delegations and downloads
targets from ``/tuf/targets/`` of a running server, getting exactly the signed bytes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from tuf.api.exceptions import UnsignedMetadataError
from tuf.ngclient import Updater

from otaguard.crypto.keys import generate_signer
from otaguard.demo import HARDWARE, Demo
from otaguard.repo import maker_delegation
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.roles import ROOT, TARGETS


def _stock_updater(d: Demo, where: Path, trusted_root: bytes | None = None) -> Updater:
    """The stock client, default fetcher, knowing nothing but the trusted root."""
    assert d.repo is not None
    (where / "metadata").mkdir(parents=True)
    (where / "targets").mkdir()
    return Updater(
        metadata_dir=str(where / "metadata"),
        metadata_base_url=f"{d.url}/tuf/metadata/",
        target_base_url=f"{d.url}/tuf/targets/",
        target_dir=str(where / "targets"),
        bootstrap=trusted_root or d.repo.root_history()[0].read_bytes(),
    )


def test_stock_updater_refreshes_and_downloads_from_the_server(
    demo_world: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = demo_world
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    assert d.repo is not None
    assert d.api is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(d.ctx.settings.tls.ca_cert))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    top_name, top_image = d.release("1.0.0")

    # A second release in a team's delegated role, spread over hashed bins.
    team = generate_signer()
    maker_delegation.delegate(
        d.repo, "team", keys=[team.public_key], threshold=1, paths=[f"{HARDWARE}/team-*"]
    )
    for s in d.maker_signers[TARGETS]:
        d.repo.sign(TARGETS, s)
    maker_delegation.delegate_hashed_bins(
        d.repo, "team", keys=[team.public_key], threshold=1, bit_length=4
    )
    bin_image = b"team firmware built elsewhere " * 100
    bin_name = f"{HARDWARE}/team-2.0.img"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "img"
        path.write_bytes(bin_image)
        d.repo.add_target(path, bin_name, ReleaseInfo("2.0", (HARDWARE,)))
    maker_delegation.sign_delegated(d.repo, team)
    d.api.publish(d.repo)

    updater = _stock_updater(d, tmp_path / "client")
    assert type(updater) is Updater  # the stock class, default fetcher
    updater.refresh()
    for name, expected in ((top_name, top_image), (bin_name, bin_image)):
        info = updater.get_targetinfo(name)
        assert info is not None, name
        assert info.length == len(expected)
        got = Path(updater.download_target(info))
        assert got.read_bytes() == expected
        assert updater.find_cached_target(info) == str(got)
    assert updater.get_targetinfo(f"{HARDWARE}/not-released.img") is None
    fetched = {p.name for p in (tmp_path / "client" / "metadata").iterdir()}
    assert {"root.json", "timestamp.json", "snapshot.json", "targets.json", "team.json"} <= fetched
    assert len([n for n in fetched if n.startswith("team-bins-")]) == 1  # one bin of 16


def test_stock_updater_refuses_metadata_its_root_does_not_vouch_for(
    demo_world: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control for the test above: trust comes from the given root.json, not from the server.
    A client whose (validly root-signed) root names another timestamp key refuses the server's
    timestamp."""
    d = demo_world
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    assert d.repo is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(d.ctx.settings.tls.ca_cert))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    d.release("1.0.0")
    root = d.repo.root()
    root.signed.roles["timestamp"].keyids = []
    root.signed.add_key(generate_signer().public_key, "timestamp")
    root.signatures.clear()
    for s in d.maker_signers[ROOT][:2]:
        root.sign(s, append=True)
    updater = _stock_updater(d, tmp_path / "client", root.to_bytes())
    with pytest.raises(UnsignedMetadataError, match="timestamp"):
        updater.refresh()

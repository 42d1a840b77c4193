"""The delta flow through a running server, maker to fleet view: the maker builds and signs a
delta target, the server publishes it and a stock python-tuf client sees it; a device whose
signed manifest reports exactly the delta's source image gets an assignment naming the delta
(a device reporting another image, or none, does not); bytes the server serves for a device's
assignment show in the deployment's fleet bytes view and in the metrics."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import tempfile
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from securesystemslib.signer import CryptoSigner
from tuf.ngclient import Updater
from typer.testing import CliRunner

from otaguard.bundle.create import create_bundle
from otaguard.bundle.format import BundleReader
from otaguard.cli.main import app
from otaguard.crypto.keys import generate_signer
from otaguard.demo import HARDWARE, Demo
from otaguard.director.assignment import verify_assignment
from otaguard.director.manifest import VersionManifest, sign_manifest
from otaguard.errors import VerificationError
from otaguard.net.tls import tls_context
from otaguard.repo.delta_targets import parse_delta_target
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.maker_deltas import add_deltas
from otaguard.repo.roles import TARGETS
from otaguard.server.console.session import SESSION_COOKIE
from otaguard.server.metrics import ServerMetrics
from otaguard.server.transfers import flush

V1 = random.Random(7).randbytes(128 * 1024)
V2 = V1[:5000] + b"new code" * 16 + V1[5128:]
V1_SHA = hashlib.sha256(V1).hexdigest()


def _release(d: Demo) -> tuple[str, str]:
    """Releases 1 and 2 and the delta 1 -> 2, signed and published; (v2 name, delta name)."""
    assert d.repo is not None
    assert d.api is not None
    with tempfile.TemporaryDirectory() as tmp:
        for version, data in (("1", V1), ("2", V2)):
            path = Path(tmp) / f"fw-{version}.img"
            path.write_bytes(data)
            d.repo.add_target(
                path, f"{HARDWARE}/fw-{version}.img", ReleaseInfo(version, (HARDWARE,))
            )
    name = f"{HARDWARE}/fw-2.img"
    (outcome,) = add_deltas(d.repo, name, ["1"])
    assert outcome.target is not None, outcome.message
    for signer in d.maker_signers[TARGETS]:
        d.repo.sign(TARGETS, signer)
    d.api.publish(d.repo)
    return name, outcome.target.path


def _device(d: Demo, device_id: str) -> tuple[CryptoSigner, httpx.Client]:
    assert d.api is not None
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    signer = generate_signer()
    key = {"keyid": signer.public_key.keyid, **signer.public_key.to_dict()}
    credential = d.api.register_device(device_id, HARDWARE, ["t"], manifest_key=key)
    client = httpx.Client(
        base_url=d.url,
        verify=tls_context(d.ctx.settings.tls.ca_cert),
        headers={"Authorization": f"Bearer {credential}", "X-OTAGuard-Device": device_id},
        timeout=30,
    )
    return signer, client


def _app_metrics(d: Demo) -> ServerMetrics:
    assert d.server is not None
    app = d.server.server.config.loaded_app
    while not hasattr(app, "state"):
        app = app.app
    return cast(ServerMetrics, app.state.metrics)


def _check_in(
    d: Demo, device_id: str, signer: CryptoSigner, client: httpx.Client, image: str | None
) -> Any:
    assert d.ctx is not None
    manifest = VersionManifest.create(
        device_id=device_id,
        hardware=HARDWARE,
        version="1",
        slot="a",
        security_version=0,
        agent_version="test",
        image_sha256=image,
        now=dt.datetime.now(dt.UTC),
    )
    r = client.post("/device/v1/checkin", json={"manifest": sign_manifest(manifest, signer)})
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["action"] == "update"
    return verify_assignment(
        reply["assignment"].encode(),
        d.ctx.director.public_key,
        device_id=device_id,
        min_counter=1,
    )


def test_delta_target_is_seen_by_a_stock_tuf_client(
    demo_world: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = demo_world
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    assert d.repo is not None
    _name, delta_name = _release(d)
    monkeypatch.setenv("SSL_CERT_FILE", str(d.ctx.settings.tls.ca_cert))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    (tmp_path / "m").mkdir()
    (tmp_path / "t").mkdir()
    updater = Updater(
        metadata_dir=str(tmp_path / "m"),
        metadata_base_url=f"{d.url}/tuf/metadata/",
        target_base_url=f"{d.url}/tuf/targets/",
        target_dir=str(tmp_path / "t"),
        bootstrap=d.repo.root_history()[0].read_bytes(),
    )
    updater.refresh()
    info = updater.get_targetinfo(delta_name)
    assert info is not None
    delta = parse_delta_target(info)
    assert delta.source_sha256 == V1_SHA
    assert delta.target_sha256 == hashlib.sha256(V2).hexdigest()
    got = Path(updater.download_target(info)).read_bytes()
    assert got == (d.repo.staged_dir / delta_name).read_bytes()
    assert len(got) < len(V2) // 10


def test_delta_offered_only_on_exact_source_hash_and_bytes_counted(demo_world: Demo) -> None:
    d = demo_world
    assert d.ctx is not None
    assert d.api is not None
    name, delta_name = _release(d)
    devices = {i: _device(d, i) for i in ("match", "other", "silent")}
    dep = int(d.api.create_deployment("to-2", name, {"all": True})["id"])
    try:
        match = _check_in(d, "match", *devices["match"], V1_SHA)
        assert match.target.path == name
        assert match.delta_path == delta_name
        # control: another image (even with the same 16-hex path prefix), or none: no delta
        other = _check_in(d, "other", *devices["other"], V1_SHA[:16] + "0" * 48)
        assert other.target.path == name
        assert other.delta_path is None
        silent = _check_in(d, "silent", *devices["silent"], None)
        assert silent.delta_path is None

        # downloads: "match" takes the delta, "other" the full image; one anonymous download
        delta_target = d.ctx.repo.find_target(delta_name)
        full_target = d.ctx.repo.find_target(name)
        assert delta_target is not None
        assert full_target is not None
        for who, target in (("match", delta_target), ("other", full_target)):
            digest = target.hashes["sha256"]
            path = f"{HARDWARE}/{digest}.{target.path.split('/', 1)[1]}"
            r = devices[who][1].get(f"/tuf/targets/{path}")
            assert r.status_code == 200
        anonymous = httpx.get(
            f"{d.url}/tuf/targets/{HARDWARE}/{full_target.hashes['sha256']}.fw-2.img",
            verify=tls_context(d.ctx.settings.tls.ca_cert),  # type: ignore[union-attr]
        )
        assert anonymous.status_code == 200
        metrics = _app_metrics(d)
        flush(d.ctx, metrics)
        view = d.api.deployment(dep)["transfer"]
        assert view == {
            "bytes_sent": delta_target.length + len(V2),
            "delta_bytes": delta_target.length,
            "full_bytes": 2 * len(V2),
            "saved_bytes": len(V2) - delta_target.length,
            "devices_served": 2,
            "devices_delta": 1,
        }
        sample = metrics.registry.get_sample_value
        labels = {"deployment": str(dep)}
        assert sample("otaguard_deployment_bytes_sent", labels) == view["bytes_sent"]
        assert sample("otaguard_deployment_delta_bytes", labels) == view["delta_bytes"]
        assert sample("otaguard_deployment_full_bytes", labels) == view["full_bytes"]
        assert sample("otaguard_deltas_offered_total") == 1.0
        _operators_see_the_bytes(d, dep, view)
    finally:
        for _signer, client in devices.values():
            client.close()


def _operators_see_the_bytes(d: Demo, dep: int, view: dict[str, int]) -> None:
    """``otaguard mgmt deployments show`` and the console's deployment page, against the
    running server, show the figures of the fleet bytes view."""
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    d.ctx.identity.add_user("vera", ["viewer"])
    token = d.ctx.identity.create_token("vera", scopes=["*"]).token
    env = {
        "OTAGUARD_TOKEN": token,
        "OTAGUARD_SERVER": d.url,
        "OTAGUARD_CA": str(d.ctx.settings.tls.ca_cert),
        "OTAGUARD_CONTEXT": None,
        "COLUMNS": "250",
    }
    r = CliRunner().invoke(app, ["mgmt", "deployments", "show", str(dep)], env=env)
    assert r.exit_code == 0, r.output
    saved = f"{view['saved_bytes']} B"
    share = f"{100 * view['saved_bytes'] / view['full_bytes']:.1f}%"
    for text in (f"{view['bytes_sent']} B", f"{view['full_bytes']} B", saved, share):
        assert text in r.stdout, r.stdout
    assert "2, 1 of them by a delta" in r.stdout
    page = httpx.get(
        f"{d.url}/console/deployments/{dep}",
        cookies={SESSION_COOKIE: token},
        verify=tls_context(d.ctx.settings.tls.ca_cert),
    )
    assert page.status_code == 200
    html = page.text[page.text.index('id="transfer"') :]
    for text in ("Bytes sent", f"{view['bytes_sent']} B", "Full-image bytes", saved, share):
        assert text in html
    assert "2, 1 of them by a delta" in html


def test_bundle_carries_the_delta_and_its_metadata(demo_world: Demo, tmp_path: Path) -> None:
    d = demo_world
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    assert d.repo is not None
    name, delta_name = _release(d)
    ca, root = d.ctx.settings.tls.ca_cert, d.repo.root_history()[0].read_bytes()
    out = tmp_path / "v2.bundle"
    manifest = create_bundle(d.url, name, out, trusted_root=root, ca_file=ca, delta_from=(V1_SHA,))
    assert manifest.deltas == (delta_name,)
    patch = (d.repo.staged_dir / delta_name).read_bytes()
    with BundleReader(out) as reader:
        assert reader.manifest.deltas == (delta_name,)
        reader.check_integrity()
        targets = {n: reader.open(n).read() for n in reader.names() if n.startswith("targets/")}
    assert sorted(len(v) for v in targets.values()) == sorted([len(patch), len(V2)])
    assert patch in targets.values()
    assert V2 in targets.values()  # the full image stays: every other device, and the fallback
    # no delta from another image: a clear refusal, no bundle written
    with pytest.raises(VerificationError, match="no delta"):
        create_bundle(
            d.url,
            name,
            tmp_path / "x.bundle",
            trusted_root=root,
            ca_file=ca,
            delta_from=(hashlib.sha256(b"other").hexdigest(),),
        )
    assert not (tmp_path / "x.bundle").exists()

"""Root rotation end to end: devices provisioned with root v1 follow a rotation to root v2 (one
root key replaced, a compromised targets key revoked) and keep updating; targets metadata
signed with the revoked key is refused by the server and, if a compromised server serves it
anyway, by the device."""

from __future__ import annotations

import pytest
from tuf.api.metadata import Metadata, TargetFile, Targets

from otaguard.crypto.keys import generate_signer
from otaguard.demo import HARDWARE, Demo
from otaguard.device.image import build_image
from otaguard.errors import VerificationError
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.roles import ROOT, TARGETS
from otaguard.repo.rotation import RoleChange, rotate


def test_device_follows_root_rotation_and_refuses_revoked_targets_key(demo_world: Demo) -> None:
    d = demo_world
    assert d.repo is not None
    assert d.ctx is not None
    assert d.api is not None
    _, v1 = d.release("1.0.0")
    d.provision_fleet(v1)  # factory root: v1
    old_roots = d.maker_signers[ROOT]
    stolen, kept = d.maker_signers[TARGETS]
    new_root, new_targets = generate_signer(), generate_signer()

    result = rotate(
        d.repo,
        {
            ROOT: RoleChange((new_root.public_key,), (old_roots[0].public_key.keyid,)),
            TARGETS: RoleChange((new_targets.public_key,), (stolen.public_key.keyid,)),
        },
    )
    assert result.root_version == 2
    # Root v2: old root-1 + root-2 meet v1's 2-of-3; root-2 + new key meet v2's 2-of-3.
    for signer in (old_roots[1], new_root):
        d.repo.sign(ROOT, signer)
    assert [st.valid for st in d.repo.root_status()] == [True, False]
    d.repo.sign(ROOT, old_roots[0])
    assert all(st.valid for st in d.repo.root_status())

    d.maker_signers[TARGETS] = [kept, new_targets]
    v2_name, _ = d.release("2.0.0", security_version=1)  # publishes root v2, then targets
    root = d.ctx.repo.root()
    assert root is not None
    assert root.signed.version == 2

    dep = d.deploy(v2_name, name="after-rotation")
    runs = d.run()
    for r in runs:
        assert not r.error
        assert (r.version_after, r.slot_after) == ("2.0.0", "b")
    assert {s["status"] for s in d.api.deployment_devices(dep)} == {"succeeded"}
    for dev in d.fleet:  # each device now trusts root v2, reached through the chain from v1
        cached = Metadata.from_file(str(dev.config.tuf_dir / "root.json"))
        assert cached.signed.version == 2

    # An attacker holding the revoked key, one current targets key and the server's online
    # keys adds a malicious image. Under root v1 these two signatures met the threshold.
    evil = build_image("6.6.6", HARDWARE, security_version=1, payload_size=4096)
    evil_path = d.run_dir / "evil.img"
    evil_path.write_bytes(evil)
    current = d.ctx.repo.targets()
    assert current is not None
    forged = Metadata[Targets].from_bytes(current.to_bytes())
    name = f"{HARDWARE}/firmware-6.6.6.img"
    target = TargetFile.from_file(name, str(evil_path), ["sha256"])
    info = ReleaseInfo("6.6.6", (HARDWARE,), 1)
    target.unrecognized_fields["custom"] = info.to_custom()
    forged.signed.targets[name] = target
    forged.signed.version += 1
    forged.signatures.clear()
    forged.sign(stolen, append=True)
    forged.sign(kept, append=True)
    data = forged.to_bytes()

    # The server itself refuses it (threshold of root v2's targets keys not met)...
    with pytest.raises(VerificationError, match="threshold"):
        d.ctx.repo.publish_targets(data)

    # ...so the attacker writes it into the server's store and re-snapshots with the stolen
    # online keys, then deploys it.
    digest = target.hashes["sha256"]
    blob = d.ctx.blobs.path(digest)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(evil)
    d.ctx.repo.store.put(f"{forged.signed.version}.targets.json", data)
    d.ctx.repo._resnapshot({"targets": forged.signed.version})
    d.ctx.store.upsert_release(
        name,
        version="6.6.6",
        hardware=[HARDWARE],
        security_version=1,
        sha256=digest,
        length=len(evil),
        custom=info.to_custom(),
    )
    evil_dep = d.deploy(name, name="evil")
    runs = d.run()
    for r in runs:
        assert (r.version_after, r.slot_after) == ("2.0.0", "b")
        detail = d.api.device(r.device_id)
        last = detail["events"][-1]
        assert last["event"] == "refused"
        assert "repository metadata rejected" in last["detail"]["error"]
        assert "targets was signed by 1/2 keys" in last["detail"]["error"]
    assert {s["status"] for s in d.api.deployment_devices(evil_dep)} == {"failed"}

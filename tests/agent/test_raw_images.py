"""Raw images end to end: a real ext4 root filesystem (``mke2fs -d``), plain and
zstd-compressed, released with ``add_target``, deployed through the real server and installed by
``otaguard agent run`` on a device described by its agent.toml. The agent learns which slot it
booted from the kernel command line and what that slot holds from its journal, never from the
image; a compressed artifact is decompressed into the slot and the slot checked against the
signed image hash."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import zstandard
from typer.testing import CliRunner

from kit.agent import write_agent_toml, write_cmdline
from otaguard.cli.main import app
from otaguard.demo import HARDWARE, Demo
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.roles import TARGETS

runner = CliRunner()


def ext4_image(tmp: Path, version: str) -> bytes:
    """A 2 MiB ext4 filesystem holding /etc/os-release with ``version`` (no mount needed)."""
    root = tmp / f"root-{version}"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text(f"VERSION_ID={version}\n")
    image = tmp / f"rootfs-{version}.ext4"
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(root), str(image), "2M"],
        check=True,
        env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin", "E2FSPROGS_FAKE_TIME": "1"},
    )
    return image.read_bytes()


def release(d: Demo, artifact: Path, name: str, version: str) -> str:
    assert d.repo is not None
    assert d.api is not None
    d.repo.add_target(artifact, name, ReleaseInfo(version, (HARDWARE,), 1))
    for signer in d.maker_signers[TARGETS]:
        d.repo.sign(TARGETS, signer)
    d.api.publish(d.repo)
    return name


def agent(toml: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["agent", *args, "--config", str(toml)])
    return result.exit_code, result.output


def status(toml: Path) -> dict[str, object]:
    code, out = agent(toml, "status", "--json")
    assert code == 0, out
    data: dict[str, object] = json.loads(out)
    return data


@pytest.mark.parametrize("compressed", [False, True], ids=["ext4", "ext4.zst"])
def test_raw_ext4_image_updates_a_device_end_to_end(
    demo_world: Demo, tmp_path: Path, compressed: bool
) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    rootfs = ext4_image(tmp_path, "2.0.0")
    assert rootfs[1080:1082] == b"\x53\xef"  # the ext4 superblock magic: a real filesystem
    artifact = tmp_path / ("rootfs.ext4.zst" if compressed else "rootfs.ext4")
    artifact.write_bytes(zstandard.ZstdCompressor().compress(rootfs) if compressed else rootfs)
    name = release(d, artifact, f"{HARDWARE}/{artifact.name}", "2.0.0")
    d.devices = 1
    d.provision_fleet(v1)
    (dev,) = d.fleet
    dev.close()  # from now on the device is driven by `otaguard agent ...` only
    toml = write_agent_toml(dev)
    assert status(toml)["running"] == {"slot": "a", "version": "1.0.0"}
    assert d.api is not None
    dep_id = d.deploy(name)

    code, out = agent(toml, "run", "--once")
    assert code == 0, out
    assert status(toml)["state"] == "reboot_pending"
    slot_b = dev.slots.path("b").read_bytes()
    assert slot_b == rootfs  # the image unchanged (decompressed when it was compressed)
    env = dev.env.read()
    assert (env["boot_slot"], env["upgrade_available"]) == ("b", "1")

    # The reboot: U-Boot boots slot b on trial and says so on the kernel command line.
    write_cmdline(dev, "b")
    code, out = agent(toml, "run", "--once")
    assert code == 0, out
    st = status(toml)
    assert st["state"] == "idle"
    assert st["running"] == {"slot": "b", "version": "2.0.0"}
    env = dev.env.read()
    assert (env["boot_slot"], env["upgrade_available"], env["bootcount"]) == ("b", "0", "0")
    detail = d.api.device(dev.config.device_id)
    assert (detail["current_version"], detail["active_slot"]) == ("2.0.0", "b")
    statuses = {t["device_id"]: t["status"] for t in d.api.deployment_devices(dep_id)}
    assert statuses == {dev.config.device_id: "succeeded"}


def test_compressed_release_records_the_image_it_decompresses_to(
    demo_world: Demo, tmp_path: Path
) -> None:
    d = demo_world
    d.release("1.0.0")
    rootfs = ext4_image(tmp_path, "3.0.0")
    artifact = tmp_path / "rootfs.ext4.zst"
    artifact.write_bytes(zstandard.ZstdCompressor().compress(rootfs))
    name = release(d, artifact, f"{HARDWARE}/rootfs-3.ext4.zst", "3.0.0")
    assert d.repo is not None
    target = d.repo.targets().signed.targets[name]
    info = ReleaseInfo.of_target(target)
    assert target.length == artifact.stat().st_size  # the signed artifact as published
    assert target.hashes["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert (info.compression, info.image_length) == ("zstd", len(rootfs))
    assert info.image_sha256 == hashlib.sha256(rootfs).hexdigest()

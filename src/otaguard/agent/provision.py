"""Preparing a device for the agent (``otaguard device provision``), on the device itself.

A factory station (or a person with a board on the bench) runs it once per device, with the
device's ``agent.toml`` in place. It does what the agent cannot do for itself, and every step is
idempotent (run it again after a failure, or a second time to enroll):

1. the state directory (0700);
2. the manifest signing key, made on the device, kept in ``manifest_key_file`` (0600; or the
   PKCS#11 token of ``[agent.manifest_key_pkcs11]``); its public key is written next to it
   (``manifest.pub.json``) for the server's device registration;
3. the boot environment, when it is missing or blank: the bootloader's variables with the
   factory slot committed (an existing valid environment is left as it is);
4. the journal's record of what each slot holds: the factory image's version (the agent never
   reads a version out of an image) and its sha256 (``slot_images``), so the first version
   manifest already names the exact image and the server can offer a delta made from it. The
   hash comes from the factory image file given for the slot (the slot's first bytes are
   hashed once and must be that image: a partition larger than the image still works), or,
   for a simulation's plain-file slot, from the whole file;
5. with a one-time enrollment token (read from a file or stdin, never the command line): a TLS
   key made on the device (0600), a CSR, and the client certificate the server issues.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from otaguard.agent.config import AgentConfig
from otaguard.agent.journal import JournalFile
from otaguard.agent.layout import DeviceLayout
from otaguard.crypto.device_key import load_or_create_device_key, public_key_dict
from otaguard.device.bootloader import default_env
from otaguard.device.slots import BlockDeviceSlots
from otaguard.errors import AuthError, BootError, ConfigError, InstallError
from otaguard.identity.device_keys import load_or_create_key, make_csr
from otaguard.identity.enroll import enroll
from otaguard.net.download import hash_prefix


@dataclass
class Provisioned:
    """What ``provision_device`` did, and what the device still lacks."""

    manifest_public_key: dict[str, Any] | None = None
    done: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def provision_device(
    config: AgentConfig,
    layout: DeviceLayout,
    *,
    boot_slot: str = "a",
    slot_versions: dict[str, str] | None = None,
    slot_image_files: dict[str, Path] | None = None,
    token: str | None = None,
) -> Provisioned:
    """Steps 1-5 of the module text. Raises ``ConfigError`` for a bad request (unknown slot,
    enrollment without a client certificate configured, a slot that does not hold the image
    file given for it), ``AuthError`` if the server refuses the enrollment."""
    named = set(slot_versions or {}) | set(slot_image_files or {})
    if boot_slot not in ("a", "b") or not named <= {"a", "b"}:
        raise ConfigError("slots are a and b")
    before = JournalFile(config.journal_path).load()
    known = {  # hashed already, for the same factory version: not read again
        slot
        for slot in before.slot_images
        if (slot_versions or {}).get(slot, before.slot_versions.get(slot))
        == before.slot_versions.get(slot)
    }
    images = slot_hashes(layout, slot_versions or {}, slot_image_files or {}, known)
    out = Provisioned()
    config.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.state_dir, 0o700)
    if config.manifest_key_pkcs11 is None:
        signer = load_or_create_device_key(config.manifest_key_path)
        out.manifest_public_key = public_key_dict(signer)
        pub = config.manifest_key_path.with_name("manifest.pub.json")
        pub.write_text(json.dumps(out.manifest_public_key, indent=1, sort_keys=True) + "\n")
        out.done.append(f"manifest key {config.manifest_key_path} (public: {pub})")
    if _write_env_if_blank(layout, boot_slot):
        out.done.append(f"boot environment: slot {boot_slot} committed")
    if slot_versions or images:
        journal_file = JournalFile(config.journal_path)
        journal = journal_file.load()
        journal.slot_versions.update(slot_versions or {})
        journal.slot_images.update(images)
        journal_file.save(journal)
        out.done.append(f"journal: slots hold {slot_versions or {}}, images {images}")
    if token is not None:
        out.done.append(_enroll(config, token))
    out.missing = config.missing_files() + layout.missing_files()
    return out


def slot_hashes(
    layout: DeviceLayout, versions: dict[str, str], files: dict[str, Path], known: set[str]
) -> dict[str, str]:
    """The sha256 of the image each slot holds: for a slot given an image file, that file's
    (after checking the slot's first bytes are exactly it); for a slot given only a version
    in a plain-file layout (``slots = "files"``) and not hashed for that version already
    (``known``), the slot file's. Block slots without an image file stay unknown (a
    partition is longer than its image).

    Raises:
        ConfigError: an image file cannot be read, or the slot does not hold it.
    """
    slots = layout.open_slots()
    out: dict[str, str] = {}
    for slot, image in files.items():
        try:
            with image.open("rb") as fh:
                length = fh.seek(0, 2)
                fh.seek(0)
                digest = hash_prefix(fh.read, length).hexdigest()
        except OSError as exc:
            raise ConfigError(f"cannot read the factory image {image}: {exc}") from exc
        try:
            with slots.open_read(slot) as fh:
                held = hash_prefix(fh.read, length).hexdigest()
        except (OSError, InstallError) as exc:
            raise ConfigError(f"cannot read slot {slot}: {exc}") from exc
        if held != digest:
            raise ConfigError(f"slot {slot} does not hold the image {image}")
        out[slot] = digest
    if layout.slots == "files" and not isinstance(slots, BlockDeviceSlots):
        for slot in set(versions) - set(files) - known:
            try:
                with slots.open_read(slot) as fh:
                    size = fh.seek(0, 2)
                    fh.seek(0)
                    if size:
                        out[slot] = hash_prefix(fh.read, size).hexdigest()
            except (OSError, InstallError):
                continue  # no slot file yet: its image stays unknown
    return out


def _write_env_if_blank(layout: DeviceLayout, boot_slot: str) -> bool:
    env = layout.open_env()
    try:
        if env.read().get("boot_slot") in ("a", "b"):
            return False
    except (BootError, ConfigError, OSError):
        pass
    for path in layout.uboot_env if layout.boot_env == "uboot" else [layout.grub_env]:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    env.write(default_env(boot_slot))
    return True


def _enroll(config: AgentConfig, token: str) -> str:
    if config.client_cert_file is None or config.client_key_file is None:
        raise ConfigError("enrollment needs client_cert_file and client_key_file in [agent]")
    if config.ca_file is None:
        raise ConfigError("enrollment needs ca_file (the server's CA) in [agent]")
    key = load_or_create_key(config.client_key_file)
    try:
        pem = enroll(
            config.server_url, config.ca_file, config.device_id, token.strip(),
            make_csr(key, config.device_id),
        )  # fmt: skip
    except httpx.HTTPStatusError as exc:
        raise AuthError(f"enrollment refused: {exc.response.text}") from None
    except httpx.HTTPError as exc:
        raise ConfigError(f"enrollment failed: server unreachable: {exc}") from None
    config.client_cert_file.write_text(pem)
    return f"enrolled: certificate {config.client_cert_file}, key {config.client_key_file}"

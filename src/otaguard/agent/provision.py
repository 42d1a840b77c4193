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
4. the journal's record of what each slot holds (the factory image's version), since the agent
   never reads a version out of an image;
5. with a one-time enrollment token (read from a file or stdin, never the command line): a TLS
   key made on the device (0600), a CSR, and the client certificate the server issues.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import httpx

from otaguard.agent.config import AgentConfig
from otaguard.agent.journal import JournalFile
from otaguard.agent.layout import DeviceLayout
from otaguard.crypto.device_key import load_or_create_device_key, public_key_dict
from otaguard.device.bootloader import default_env
from otaguard.errors import AuthError, BootError, ConfigError
from otaguard.identity.device_keys import load_or_create_key, make_csr
from otaguard.identity.enroll import enroll


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
    token: str | None = None,
) -> Provisioned:
    """Steps 1-5 of the module text. Raises ``ConfigError`` for a bad request (unknown slot,
    enrollment without a client certificate configured), ``AuthError`` if the server refuses
    the enrollment."""
    if boot_slot not in ("a", "b") or not set(slot_versions or {}) <= {"a", "b"}:
        raise ConfigError("slots are a and b")
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
    if slot_versions:
        journal_file = JournalFile(config.journal_path)
        journal = journal_file.load()
        journal.slot_versions.update(slot_versions)
        journal_file.save(journal)
        out.done.append(f"journal: slots hold {slot_versions}")
    if token is not None:
        out.done.append(_enroll(config, token))
    out.missing = config.missing_files() + layout.missing_files()
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

"""The key that signs the device's version manifests (DSSE, at every check-in): a 0600 key file
(``manifest_key_file``, default ``state_dir/manifest.key``) or a key generated inside a PKCS#11
token (``[agent.manifest_key_pkcs11]``: a secure element, a TPM's PKCS#11 interface, SoftHSM2
in tests), used through securesystemslib's ``HSMSigner`` (``crypto/hsm.py``): the private key
is non-extractable and signs in the token.

The TLS client key stays a file: CPython's ``ssl`` module loads client keys only from files
(``load_cert_chain``; no engine or provider hook), see docs/SECURITY.md.
"""

from __future__ import annotations

import os

from securesystemslib.signer import Signer

from otaguard.agent.config import AgentConfig, Pkcs11Key
from otaguard.errors import KeyMaterialError


def token_pin(key: Pkcs11Key) -> str:
    """The PIN from ``pin_file`` or ``$pin_env`` (errors name the source, never the PIN)."""
    if key.pin_file is not None:
        try:
            pin = key.pin_file.read_text().strip()
        except OSError as exc:
            raise KeyMaterialError(f"cannot read the token PIN file {key.pin_file}: {exc}") from exc
        if not pin:
            raise KeyMaterialError(f"the token PIN file {key.pin_file} is empty")
        return pin
    pin = os.environ.get(key.pin_env, "")
    if not pin:
        raise KeyMaterialError(f"the token PIN is read from ${key.pin_env}, which is not set")
    return pin


def token_manifest_signer(key: Pkcs11Key) -> Signer:
    from otaguard.crypto.hsm import import_token_key, token_signer

    pin = token_pin(key)
    ref = import_token_key(key.token_label, pin, key_id=key.key_id, lib=key.module)
    return token_signer(ref, pin, key.module)


def manifest_signer(config: AgentConfig) -> Signer:
    """The signer of this device's version manifests, as the config says."""
    if config.manifest_key_pkcs11 is not None:
        return token_manifest_signer(config.manifest_key_pkcs11)
    from otaguard.crypto.device_key import load_device_key

    return load_device_key(config.manifest_key_path)

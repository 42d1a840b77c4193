"""Detached signatures: a key holder signs a copy of the metadata on another (offline) machine
and brings back only a small JSON file, which is checked and imported into the repository.

The file names the role, the version and the sha256 of the exact bytes signed, so a signature
made over another version is refused with a clear message rather than "does not verify".
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from securesystemslib.signer import Signer

from otaguard.errors import RepositoryError
from otaguard.repo.maker import MakerRepository
from otaguard.repo.roles import ROOT, TARGETS, SignatureStatus

FORMAT = "otaguard-detached-signature/1"


def _metadata(repo: MakerRepository, role: str) -> Any:
    if role not in (ROOT, TARGETS):
        raise RepositoryError(f"the maker signs root and targets, not {role!r}")
    return repo.root() if role == ROOT else repo.targets()


def make_detached(repo: MakerRepository, role: str, signer: Signer) -> dict[str, Any]:
    """Sign ``role``'s current metadata in ``repo`` (a copy) without changing it."""
    md = _metadata(repo, role)
    keyid = signer.public_key.keyid
    if keyid not in repo.signing_keys(role):
        raise RepositoryError(f"key {keyid[:12]} is not a {role} key of this repository")
    payload = md.signed_bytes
    sig = signer.sign(payload)
    return {
        "format": FORMAT,
        "role": role,
        "version": md.signed.version,
        "signed_sha256": hashlib.sha256(payload).hexdigest(),
        "signature": sig.to_dict(),
    }


def parse_detached(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RepositoryError(f"signature file is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RepositoryError(f"not an OTAGuard detached signature (format {FORMAT})")
    for name, kind in (
        ("role", str),
        ("version", int),
        ("signed_sha256", str),
        ("signature", dict),
    ):
        if not isinstance(data.get(name), kind):
            raise RepositoryError(f"detached signature has no valid {name!r}")
    return data


def import_detached(repo: MakerRepository, data: dict[str, Any]) -> SignatureStatus:
    """Add the signature in ``data`` if it was made over exactly the current metadata."""
    role = str(data["role"])
    md = _metadata(repo, role)
    if data["version"] != md.signed.version:
        raise RepositoryError(
            f"signature is over {role} v{data['version']} but the repository has "
            f"v{md.signed.version}; sign the current metadata"
        )
    if data["signed_sha256"] != hashlib.sha256(md.signed_bytes).hexdigest():
        raise RepositoryError(
            f"signature is over different {role} v{md.signed.version} content than this "
            "repository's; sign a fresh copy"
        )
    return repo.add_signature(role, data["signature"])

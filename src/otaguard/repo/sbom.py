"""Software bills of materials attached to releases (CycloneDX JSON).

A release names its SBOM by sha256 in the target's custom metadata, so the signed metadata pins
the exact SBOM document; the document itself travels beside the image.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from otaguard.errors import RepositoryError

MAX_SBOM_BYTES = 64 << 20


def cyclonedx_sha256(path: Path) -> str:
    """sha256 of ``path`` after checking that it parses as a CycloneDX JSON document."""
    try:
        size = path.stat().st_size
        if size > MAX_SBOM_BYTES:
            raise RepositoryError(f"SBOM {path} is larger than {MAX_SBOM_BYTES >> 20} MiB")
        data = path.read_bytes()
    except OSError as exc:
        raise RepositoryError(f"cannot read SBOM {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RepositoryError(f"SBOM {path} is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
        raise RepositoryError(f"SBOM {path} is not a CycloneDX document (bomFormat != CycloneDX)")
    if not isinstance(doc.get("specVersion"), str):
        raise RepositoryError(f"SBOM {path} has no CycloneDX specVersion")
    return hashlib.sha256(data).hexdigest()

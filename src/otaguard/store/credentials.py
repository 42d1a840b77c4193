"""How bearer secrets are kept: only their hash is stored.

Shared by the device credentials and bootstrap API tokens (``store/devices.py``), the
check-in path (``store/checkin.py``) and the operator and enrollment tokens
(``identity/``), so that every table stores secrets the same way.
"""

from __future__ import annotations

import hashlib


def secret_hash(secret: str) -> str:
    """Hash of a high-entropy secret (tokens are random 256-bit values, so no KDF is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def token_fingerprint(token: str) -> str:
    """A short non-secret reference to a token for logs (never the token)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]

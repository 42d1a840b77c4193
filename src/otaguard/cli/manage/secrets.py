"""Handing a freshly issued secret (an API token, an enrollment token, a device credential) to
the operator exactly once: on standard output alone (nothing else there, so it can be piped),
or into a new file only its owner can read. The server keeps only its hash."""

from __future__ import annotations

import os
from pathlib import Path

from otaguard.cli.manage.output import note


def emit_secret(secret: str, out: Path | None, what: str) -> None:
    """Write ``secret`` to ``out`` (created 0600; an existing file is refused, so nothing is
    overwritten) or print it alone on standard output; ``what`` goes to standard error."""
    if out is None:
        note(f"{what} (shown once):")
        print(secret, flush=True)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    note(f"{what}: written to {out}")

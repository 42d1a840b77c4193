"""Real binaries to diff in tests (no registry access): shared libraries of this Python, and
versions of them edited the way a rebuild changes a file (code inserted, bytes patched,
a block removed)."""

from __future__ import annotations

import _bz2
import _lzma
import io
import random
from pathlib import Path

from otaguard.delta import DeltaDecoder, encode


def real_binary(which: str = "lzma") -> bytes:
    return Path((_lzma if which == "lzma" else _bz2).__file__).read_bytes()


def rebuilt(data: bytes, seed: int = 1) -> bytes:
    """``data`` with a block inserted, a block removed and scattered bytes changed."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(40):
        at = rng.randrange(len(out) - 4)
        out[at : at + 4] = rng.randbytes(4)
    cut = len(out) // 3
    del out[cut : cut + 700]
    at = 2 * len(out) // 3
    out[at:at] = rng.randbytes(1500)
    return bytes(out)


def make_patch(tmp: Path, old: bytes, new: bytes, **kw: object) -> tuple[Path, Path, Path]:
    (tmp / "old").write_bytes(old)
    (tmp / "new").write_bytes(new)
    encode(tmp / "old", tmp / "new", tmp / "patch", **kw)  # type: ignore[arg-type]
    return tmp / "old", tmp / "new", tmp / "patch"


def apply_bytes(old: bytes | None, patch: bytes) -> bytes:
    out = io.BytesIO()
    source = io.BytesIO(old) if old is not None else None
    DeltaDecoder(source, io.BytesIO(patch)).apply(out.write)
    return out.getvalue()

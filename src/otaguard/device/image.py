"""The simulated firmware image format.

A simulated image is what a real device would boot: a header line naming the image, then the
payload. The header carries the payload's length and SHA-256 so the simulated boot ROM can tell a
complete image from a torn or corrupted one, exactly as a real bootloader checks its image::

    OTAGIMG1\\n{"version": "2.0.0", "hardware": "sim-board", "security_version": 1,
               "payload_len": N, "payload_sha256": "..."}\\n<payload bytes>
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from otaguard.errors import BootError

MAGIC = b"OTAGIMG1\n"
MAX_HEADER = 4096


@dataclass(frozen=True)
class ImageHeader:
    version: str
    hardware: str
    security_version: int
    payload_len: int
    payload_sha256: str


def build_image(
    version: str,
    hardware: str,
    *,
    security_version: int = 0,
    payload: bytes | None = None,
    payload_size: int = 64 * 1024,
) -> bytes:
    """A complete image; the payload defaults to ``payload_size`` random bytes."""
    body = payload if payload is not None else os.urandom(payload_size)
    header = {
        "version": version,
        "hardware": hardware,
        "security_version": security_version,
        "payload_len": len(body),
        "payload_sha256": hashlib.sha256(body).hexdigest(),
    }
    return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + body


def read_header(fh: BinaryIO) -> tuple[ImageHeader, int]:
    """Parse the header at the start of ``fh``; return it and the payload offset."""
    fh.seek(0)
    head = fh.read(MAX_HEADER)
    if not head.startswith(MAGIC):
        raise BootError("no image magic")
    end = head.find(b"\n", len(MAGIC))
    if end < 0:
        raise BootError("image header is truncated")
    try:
        raw = json.loads(head[len(MAGIC) : end])
        header = ImageHeader(
            version=str(raw["version"]),
            hardware=str(raw["hardware"]),
            security_version=int(raw["security_version"]),
            payload_len=int(raw["payload_len"]),
            payload_sha256=str(raw["payload_sha256"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BootError(f"image header is malformed: {exc}") from exc
    return header, end + 1


def _chunks(fh: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    fh.seek(start)
    left = length
    while left > 0:
        chunk = fh.read(min(1 << 16, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def check_image(fh: BinaryIO) -> ImageHeader:
    """Header plus payload integrity: what the boot ROM checks before it runs an image."""
    header, offset = read_header(fh)
    h = hashlib.sha256()
    n = 0
    for chunk in _chunks(fh, offset, header.payload_len):
        h.update(chunk)
        n += len(chunk)
    if n != header.payload_len or h.hexdigest() != header.payload_sha256:
        raise BootError("image payload is incomplete or corrupted")
    return header

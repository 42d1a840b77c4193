"""The console's own stylesheet and script, served from the package (no CDN, no build step).

Files are read once and named in pages with a content hash (``?v=``), so a browser may keep
them while a new version of the server is never shown with an old script.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str


@cache
def static_files() -> dict[str, StaticFile]:
    folder = resources.files("otaguard.server.console").joinpath("static")
    out: dict[str, StaticFile] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in TYPES:
            body = entry.read_bytes()
            out[entry.name] = StaticFile(body, TYPES[suffix], hashlib.sha256(body).hexdigest()[:16])
    return out


def static_url(name: str) -> str:
    return f"/console/static/{name}?v={static_files()[name].etag}"

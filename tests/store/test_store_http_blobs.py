"""The server serves and stores artifacts only through the ``BlobStore`` protocol (Range,
ETag), and refuses over-size uploads and bodies without leaving anything behind."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from otaguard.demo import Demo
from otaguard.net.tls import tls_context
from otaguard.server.context import MAX_METADATA_BYTES
from otaguard.server.ranges import RangeNotSatisfiable, parse_range
from otaguard.store.blobs import LocalBlobStore

from .memory_blobs import MemoryBlobStore


def _http(d: Demo) -> httpx.Client:
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    return httpx.Client(
        base_url=d.url,
        verify=tls_context(d.ctx.settings.tls.ca_cert),
        headers={"Authorization": f"Bearer {d.ctx.admin_token}"},
        timeout=30,
    )


def test_parse_range() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-", 100) == (0, 99)
    assert parse_range("bytes=10-19", 100) == (10, 19)
    assert parse_range("bytes=90-500", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-500", 100) == (0, 99)
    assert parse_range("bytes=0-1,5-6", 100) is None  # several ranges: whole body
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=20-10", 100) is None
    assert parse_range("bytes=-", 100) is None
    for bad in ("bytes=100-", "bytes=-0", "bytes=500-600"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(bad, 100)


def test_fleet_updates_from_a_store_with_no_files(demo_world: Demo) -> None:
    """Swap the local directory for an in-memory store: uploads, Range downloads and a
    whole rollout work, so any ``BlobStore`` (an object store) can replace it."""
    d = demo_world
    assert d.ctx is not None
    memory = MemoryBlobStore(chunk=4096)
    d.ctx.blobs = memory
    _, v1 = d.release("1.0.0")
    v2_name, v2 = d.release("2.0.0")
    digest = hashlib.sha256(v2).hexdigest()
    assert memory.blobs[digest] == v2
    assert isinstance(d.ctx.blobs, MemoryBlobStore)
    local = d.run_dir / "server" / "blobs"
    assert not LocalBlobStore(local).exists(digest)

    base = v2_name.rsplit("/", 1)
    url = f"/tuf/targets/{base[0]}/{digest}.{base[1]}"
    size = len(v2)
    with _http(d) as http:
        whole = http.get(url)
        assert (whole.status_code, whole.content) == (200, v2)
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["etag"] == f'"{digest}"'
        part = http.get(url, headers={"Range": "bytes=100-4195"})
        assert part.status_code == 206
        assert part.content == v2[100:4196]
        assert part.headers["content-range"] == f"bytes 100-4195/{size}"
        assert part.headers["content-length"] == "4096"
        tail = http.get(url, headers={"Range": "bytes=-10"})
        assert (tail.status_code, tail.content) == (206, v2[-10:])
        rest = http.get(url, headers={"Range": f"bytes={size - 5}-"})
        assert (rest.status_code, rest.content) == (206, v2[-5:])
        past = http.get(url, headers={"Range": f"bytes={size}-"})
        assert past.status_code == 416
        assert past.headers["content-range"] == f"bytes */{size}"
        several = http.get(url, headers={"Range": "bytes=0-1,5-6"})
        assert (several.status_code, several.content) == (200, v2)
        cached = http.get(url, headers={"If-None-Match": f'"{digest}"'})
        assert (cached.status_code, cached.content) == (304, b"")
        assert http.get(f"/tuf/targets/{base[0]}/{'0' * 64}.x").status_code == 404

    d.provision_fleet(v1)
    dep_id = d.deploy(v2_name)
    runs = d.run()
    assert all(r.version_after == "2.0.0" and not r.error for r in runs)
    assert d.api is not None
    assert d.api.deployment(dep_id)["counts"] == {"succeeded": len(runs)}
    assert any(read[0] == digest for read in memory.reads)


def _no_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_oversize_artifact_uploads_are_refused_and_leave_nothing(demo_world: Demo) -> None:
    d = demo_world
    assert d.ctx is not None
    d.ctx.settings.max_artifact_bytes = 100_000
    blob_root = d.run_dir / "server" / "blobs"
    big = b"B" * 300_000
    big_digest = hashlib.sha256(big).hexdigest()

    def chunked(data: bytes) -> Iterator[bytes]:  # no Content-Length: the server counts
        for i in range(0, len(data), 16_384):
            yield data[i : i + 16_384]

    with _http(d) as http:
        declared = http.put(f"/api/v1/artifacts/{big_digest}", content=big)
        assert declared.status_code == 413, declared.text
        assert declared.json()["error"] == "too_large"
        streamed = http.put(f"/api/v1/artifacts/{big_digest}", content=chunked(big))
        assert streamed.status_code == 413, streamed.text
        assert not d.ctx.blobs.exists(big_digest)
        assert _no_files(blob_root) == []

        # A body that does not hash to the digest in the URL is refused too.
        small = b"s" * 50_000
        wrong = http.put(f"/api/v1/artifacts/{'a' * 64}", content=chunked(small))
        assert wrong.status_code == 422
        assert _no_files(blob_root) == []

        # At the limit it is accepted.
        exact = b"e" * 100_000
        digest = hashlib.sha256(exact).hexdigest()
        ok = http.put(f"/api/v1/artifacts/{digest}", content=chunked(exact))
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"sha256": digest, "length": 100_000}
        assert _no_files(blob_root) == [blob_root / digest[:2] / digest]

        # Management bodies are bounded too.
        huge = http.put("/api/v1/repository/root", content=b"{" * (MAX_METADATA_BYTES + 1))
        assert huge.status_code == 413
        # Unauthenticated uploads never reach the store.
        assert d.ctx.settings.tls is not None
        other = b"o" * 1000
        anon = httpx.put(
            f"{d.url}/api/v1/artifacts/{hashlib.sha256(other).hexdigest()}",
            content=other,
            verify=tls_context(d.ctx.settings.tls.ca_cert),
        )
        assert anon.status_code == 401
        assert not d.ctx.blobs.exists(hashlib.sha256(other).hexdigest())

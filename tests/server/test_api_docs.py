"""``/docs`` works on an air-gapped network: the page names only this server's assets, and
those are the pinned Swagger UI files (an altered file is refused, not served)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from otaguard.errors import NotFoundError
from otaguard.server.app import create_app
from otaguard.server.context import ServerContext, ServerSettings
from otaguard.server.routes import api_docs


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    ctx = ServerContext.open(ServerSettings(data_dir=tmp_path / "server", port=0))
    try:
        yield TestClient(create_app(ctx))
    finally:
        ctx.close()


def test_docs_page_loads_only_local_assets(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert urls, page.text
    assert [u for u in urls if u.startswith(("http:", "https:", "//"))] == []
    for name, (media_type, digest) in api_docs.PINNED_ASSETS.items():
        r = client.get(api_docs.ASSET_PREFIX + name)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(media_type)
        assert hashlib.sha256(r.content).hexdigest() == digest
    assert client.get("/redoc").status_code == 404


def test_unknown_asset_is_404(client: TestClient) -> None:
    assert client.get(api_docs.ASSET_PREFIX + "..%2Fsecrets").status_code == 404
    assert client.get(api_docs.ASSET_PREFIX + "index.html").status_code == 404


def test_altered_asset_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = api_docs._asset_dir()
    fake = tmp_path / "vendor"
    fake.mkdir()
    (fake / "swagger-ui-bundle.js").write_bytes(
        (real / "swagger-ui-bundle.js").read_bytes() + b"\n/* injected */"
    )
    (fake / "swagger-ui.css").write_bytes((real / "swagger-ui.css").read_bytes())
    api_docs.asset.cache_clear()
    monkeypatch.setattr(api_docs, "_asset_dir", lambda: fake)
    try:
        with pytest.raises(NotFoundError, match="pinned sha256"):
            api_docs.asset("swagger-ui-bundle.js")
        assert api_docs.asset("swagger-ui.css")[0] == "text/css"  # control: unaltered file
    finally:
        api_docs.asset.cache_clear()

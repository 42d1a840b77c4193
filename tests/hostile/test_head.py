"""``HEAD`` is served for ``GET`` routes (issue 11 item 10: it answered 405 everywhere): same
status and headers as the ``GET``, no body; authorization as for the ``GET``."""

from __future__ import annotations

import pytest

from .conftest import World

PUBLIC = [
    "/healthz",
    "/tuf/metadata/timestamp.json",
    "/tuf/metadata/1.root.json",
    "/pki/device-ca.pem",
]


@pytest.mark.parametrize("path", PUBLIC)
def test_head_answers_like_get_without_a_body(world: World, path: str) -> None:
    _d, _dev, client = world
    got = client.get(path)
    head = client.head(path)
    assert got.status_code == 200, got.text
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers.get("content-length") == str(len(got.content))
    assert head.headers.get("content-type") == got.headers.get("content-type")


def test_head_needs_the_same_rights_as_get(world: World) -> None:
    d, _dev, client = world
    assert d.ctx is not None
    assert client.head("/api/v1/releases").status_code == 401
    ok = client.head("/api/v1/releases", headers={"Authorization": f"Bearer {d.ctx.admin_token}"})
    assert ok.status_code == 200
    assert ok.content == b""
    assert client.head("/tuf/metadata/nope.json").status_code == 404
    assert client.head("/device/v1/checkin").status_code == 405  # a POST route stays POST

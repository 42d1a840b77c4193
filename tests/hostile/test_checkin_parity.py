"""The lean check-in layer and the FastAPI route answer every malformed request the same
(issue 11 item 9): 415 unless the body is declared JSON, 400 for a body that is not UTF-8
JSON, 422 for JSON that does not match the schema, 401 before any of that without a valid
identity. The ``world`` fixture runs each case on both paths."""

from __future__ import annotations

import pytest

from .conftest import CHECKIN, World, signed_body

JSON = "application/json"
CASES = [
    # (content type, body, status, error code)
    ("text/plain", b"{}", 415, "unsupported_media_type"),
    (None, b"{}", 415, "unsupported_media_type"),
    ("application/x-www-form-urlencoded", b"manifest=1", 415, "unsupported_media_type"),
    ("multipart/form-data; boundary=x", b"--x--", 415, "unsupported_media_type"),
    ("application/jsonx", b"{}", 415, "unsupported_media_type"),
    (JSON, b"\xff\xfe{}", 400, "bad_request"),
    (JSON, b'{"manifest": "\xc3\x28"}', 400, "bad_request"),
    (JSON, b"{not json", 400, "bad_request"),
    (JSON, b"", 400, "bad_request"),
    (JSON, b"{" * 10_000, 400, "bad_request"),
    (JSON, b'{"manifest": {}} trailing', 400, "bad_request"),
    (JSON, b"[]", 422, "validation"),
    (JSON, b"null", 422, "validation"),
    (JSON, b'"string"', 422, "validation"),
    (JSON, b"{}", 422, "validation"),
    (JSON, b'{"manifest": null}', 422, "validation"),
    (JSON, b'{"manifest": {"payload": 1}}', 422, "validation"),
    (JSON + "; charset=utf-8", b'{"manifest": {}, "extra": 1}', 422, "validation"),
    (JSON, b'{"manifest": {"payloadType": "x", "payload": "!!", "signatures": []}}', 422, None),
]


@pytest.mark.parametrize(("content_type", "body", "status", "code"), CASES)
def test_malformed_check_ins_get_the_same_answer_on_both_paths(
    shared_world: World, content_type: str | None, body: bytes, status: int, code: str | None
) -> None:
    d, dev, client = shared_world
    headers = {"Content-Type": content_type} if content_type else {}
    request = client.build_request("POST", CHECKIN, content=body, headers=headers)
    if content_type is None:
        request.headers.pop("Content-Type", None)
    r = client.send(request)
    assert r.status_code in (status, 401 if code is None else status), r.text
    out = r.json()
    assert set(out) >= {"error", "detail"}
    if code is not None:
        assert out["error"] == code
    assert d.ctx is not None
    assert d.ctx.store.get_device(dev.config.device_id).last_seen is None


def test_identity_is_checked_before_the_body(world: World) -> None:
    _d, _dev, client = world
    """A request without an identity is refused before its body is read (the bearer
    credential itself is checked in the check-in's batch, after the body)."""
    r = client.post(CHECKIN, content=b"{not json", headers={"Authorization": ""})
    assert r.status_code == 401


def test_control_a_good_check_in_passes_on_both_paths(world: World) -> None:
    _d, dev, client = world
    assert client.post(CHECKIN, json=signed_body(dev)).status_code == 200

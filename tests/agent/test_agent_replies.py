"""The server's replies parsed at the agent's edge (``agent/replies.py``, ``net/replies.py``):
well-formed replies become typed values, malformed ones a ``ReplyError`` (never a crash)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otaguard.agent.replies import (
    CheckInReply,
    DeploymentState,
    parse_check_in,
    parse_deployment_state,
)
from otaguard.errors import DownloadError, OTAGuardError, ReplyError
from otaguard.net.replies import parse_certificate_reply


@pytest.mark.parametrize(
    ("reply", "parsed"),
    [
        ({"action": "none", "poll_interval": 60}, CheckInReply(None, None)),
        ({"action": "update", "assignment": "{}", "deployment_id": 4}, CheckInReply(b"{}", 4)),
        ({"action": "update", "assignment": "{}"}, CheckInReply(b"{}", None)),
        (
            {"action": "update", "assignment": "{}", "deployment_id": None},
            CheckInReply(b"{}", None),
        ),
        ({"action": "update", "assignment": ""}, CheckInReply(None, None)),
        ({"action": "update"}, CheckInReply(None, None)),
        ({"action": "other", "assignment": "{}", "deployment_id": 4}, CheckInReply(None, None)),
        ({}, CheckInReply(None, None)),
    ],
)
def test_check_in_replies(reply: dict[str, object], parsed: CheckInReply) -> None:
    assert parse_check_in(json.dumps(reply)) == parsed


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"update"',
        b"null",
        json.dumps({"action": "update", "assignment": 5}).encode(),
        json.dumps({"action": "update", "assignment": "{}", "deployment_id": "4"}).encode(),
        json.dumps({"action": "update", "assignment": "{}", "deployment_id": True}).encode(),
        json.dumps({"action": "update", "assignment": "{}", "deployment_id": 1.5}).encode(),
    ],
)
def test_malformed_check_in_replies_are_refused(body: bytes) -> None:
    with pytest.raises(ReplyError, match="check-in"):
        parse_check_in(body)


def test_a_reply_error_is_a_transient_download_error() -> None:
    """The agent retries a malformed reply on a later poll, as any failed exchange."""
    exc = ReplyError("x")
    assert isinstance(exc, DownloadError)
    assert not exc.permanent
    assert exc.code == "reply"


@given(st.binary(max_size=200))
def test_no_bytes_crash_the_parsers(body: bytes) -> None:
    for parse in (parse_check_in, parse_deployment_state):
        with contextlib.suppress(OTAGuardError):
            parse(body)


@pytest.mark.parametrize(
    ("reply", "cancelled"),
    [
        ({"state": "cancelled"}, True),
        ({"status": "cancelled"}, True),
        ({"state": "active", "status": "downloading"}, False),
        ({}, False),
    ],
)
def test_deployment_state(reply: dict[str, str], cancelled: bool) -> None:
    assert parse_deployment_state(json.dumps(reply)) == DeploymentState(cancelled)


def test_certificate_replies() -> None:
    assert parse_certificate_reply('{"certificate": "PEM"}', "renewal").certificate == "PEM"
    for bad in ('{"certificate": ""}', '{"certificate": 1}', "{}", "[]", "x"):
        with pytest.raises(ReplyError, match="renewal"):
            parse_certificate_reply(bad, "renewal")

"""Hostile Range headers (issue 11, item 1): a number of thousands of digits, thousands of
ranges, garbage. The server answers 200 (the Range is ignored, RFC 9110 §14.2), 206 or 416,
never a 500, a traceback or a dropped connection; unit tests on the pure parser and the same
headers over real HTTP through the running server."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otaguard.demo import Demo
from otaguard.errors import RangeNotSatisfiable
from otaguard.server.ranges import parse_range
from server.test_device_api import client_for, target_url

HUGE = "9" * 5000  # past Python's 4,300-digit int() limit: int(HUGE) raises ValueError
ZERO_PADDED_ONE = "0" * 5000 + "1"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"bytes=0-{HUGE}", (0, 99)),  # last-pos past the end: clamped (§14.1.2)
        (f"bytes=10-{HUGE}", (10, 99)),
        (f"bytes=-{HUGE}", (0, 99)),  # suffix longer than the representation: all of it
        (f"bytes={ZERO_PADDED_ONE}-{ZERO_PADDED_ONE}", (1, 1)),  # leading zeros are still 1
        (f"bytes={HUGE}-5", None),  # last < first: invalid, ignored
        ("bytes=" + ",".join(["0-0"] * 2000), None),  # many ranges: ignored
        ("bytes=0-0," * 10_000, None),
        ("bytes=\u0661-\u0662", None),  # Arabic-Indic digits are not HTTP digits
        ("bytes=\x00\xff-", None),
        ("items=0-1", None),
        ("bytes=" + "-" * 10_000, None),
        (" " * 10_000 + "bytes=1-2", (1, 2)),
    ],
)
def test_hostile_headers_are_answered_or_ignored(
    header: str, expected: tuple[int, int] | None
) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    "header", [f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}", f"bytes={HUGE}-{HUGE}0", "bytes=100-"]
)
def test_first_position_past_the_end_is_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def test_control_python_refuses_the_huge_number() -> None:
    """Control: the number really is past the interpreter's limit (the cause of the 500)."""
    with pytest.raises(ValueError, match="4300"):
        int(HUGE)


@settings(max_examples=150, deadline=None)
@given(header=st.text(max_size=200), size=st.integers(0, 10**6))
def test_any_header_gives_a_span_inside_the_representation(header: str, size: int) -> None:
    try:
        span = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if span is not None:
        first, last = span
        assert 0 <= first <= last < size


@settings(max_examples=150, deadline=None)
@given(
    first=st.one_of(st.just(""), st.from_regex(r"[0-9]{1,40}", fullmatch=True)),
    last=st.one_of(st.just(""), st.from_regex(r"[0-9]{1,40}", fullmatch=True)),
    size=st.integers(0, 10**6),
)
def test_clamped_positions_agree_with_exact_arithmetic(first: str, last: str, size: int) -> None:
    """Numbers of any length mean what exact integers say (the clamp changes no answer)."""
    header = f"bytes={first}-{last}"
    try:
        got: object = parse_range(header, size)
    except RangeNotSatisfiable:
        got = "416"
    assert got == _reference(first, last, size)


def _reference(first: str, last: str, size: int) -> object:
    if first == "" and last == "":
        return None
    if first == "":
        n = int(last)
        return "416" if n == 0 or size == 0 else (max(0, size - n), size - 1)
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        return "416"
    return start, size - 1 if last == "" else min(int(last), size - 1)


def test_hostile_ranges_over_http(demo_world: Demo) -> None:
    """The same headers through uvicorn and both Range paths (metadata from memory, a target
    from the blob store): 200/206/416, and the connection keeps answering (no 500, no drop)."""
    name, image = demo_world.release("1.0.0")
    with client_for(demo_world) as http:
        for url in ("/tuf/metadata/timestamp.json", target_url(demo_world, name)):
            whole = http.get(url).content
            assert whole
            _check_hostile_ranges(http, url, whole)
        assert whole == image
        assert http.get("/healthz").status_code == 200  # same keep-alive connection still up


def _check_hostile_ranges(http: httpx.Client, url: str, whole: bytes) -> None:
    cases: list[tuple[str, int, bytes]] = [
        (f"bytes={HUGE}-", 416, b""),
        (f"bytes=0-{HUGE}", 206, whole),
        (f"bytes=1-{HUGE}", 206, whole[1:]),
        (f"bytes=-{HUGE}", 206, whole),
        (f"bytes={HUGE}-{HUGE}", 416, b""),
        ("bytes=" + ",".join(["0-0"] * 1000), 200, whole),
        ("bytes=garbage;q=0.5, 1--2", 200, whole),
    ]
    for header, status, body in cases:
        r = http.get(url, headers={"Range": header})
        assert r.status_code == status, header[:40]
        if status == 416:
            assert r.headers["content-range"] == f"bytes */{len(whole)}"
        assert r.content == body

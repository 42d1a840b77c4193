"""HTTP Range requests (RFC 9110 §14) over any ``BlobStore``: pure parsing, and a response
that streams the chosen bytes through the store's ``read`` (no file path needed, so an object
store can serve them too)."""

from __future__ import annotations

import re

from starlette.responses import Response, StreamingResponse

from otaguard.errors import RangeNotSatisfiable
from otaguard.store.blobs import BlobStore

# ASCII digits only (``\d`` would also take other scripts' digits, which ``int`` accepts).
_SINGLE = re.compile(r"^\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*$", re.ASCII)

# Larger than any representation we serve: a position with more significant digits than this
# is "past the end" without ever being converted.
_MAX_DIGITS = 19
_BEYOND: int = 10**_MAX_DIGITS


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte span ``(first, last)`` one ``bytes=`` range asks for, or ``None`` to
    send the whole representation (no header, a malformed one, or several ranges: a server may
    ignore Range). Raises ``RangeNotSatisfiable`` when it selects nothing. Any string is
    answered in time linear in its length, without any other exception (RFC 9110 §14.2: a
    server may ignore a Range it cannot or will not honour; positions past the end are
    clamped or unsatisfiable as §14.1.2 says, whatever their number of digits)."""
    if header is None:
        return None
    m = _SINGLE.match(header)
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes
        n = _position(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - n), size - 1
    start = _position(first)
    end = size - 1 if last == "" else min(_position(last), size - 1)
    if last != "" and _smaller(last, first):
        return None  # invalid range: ignored
    if start >= size:
        raise RangeNotSatisfiable
    return start, end


def _position(digits: str) -> int:
    """The value of a run of ASCII digits, or ``_BEYOND`` when it has more than
    ``_MAX_DIGITS`` significant ones: the header is the client's, and ``int`` of an unbounded
    digit string costs quadratic time (Python refuses more than 4,300 digits outright)."""
    significant = digits.lstrip("0")
    if len(significant) > _MAX_DIGITS:
        return _BEYOND
    return int(significant or "0")


def _smaller(a: str, b: str) -> bool:
    """Whether digit string ``a`` is a smaller number than ``b``, exactly, at any length."""
    a, b = a.lstrip("0"), b.lstrip("0")
    return (len(a), a) < (len(b), b)


def blob_response(
    blobs: BlobStore,
    digest: str,
    range_header: str | None,
    headers: dict[str, str],
    media_type: str = "application/octet-stream",
) -> Response:
    """200 with the whole blob, 206 with one range, or 416; ``NotFoundError`` if absent."""
    size = blobs.size(digest)
    headers = {**headers, "Accept-Ranges": "bytes"}
    try:
        span = parse_range(range_header, size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if span is None:
        return StreamingResponse(
            blobs.read(digest),
            media_type=media_type,
            headers={**headers, "Content-Length": str(size)},
        )
    first, last = span
    return StreamingResponse(
        blobs.read(digest, first, last - first + 1),
        status_code=206,
        media_type=media_type,
        headers={
            **headers,
            "Content-Length": str(last - first + 1),
            "Content-Range": f"bytes {first}-{last}/{size}",
        },
    )


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (RFC 9110 §13.1.2: weak comparison, lists, ``*``)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(
        tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(",") if tag.strip()
    )


def bytes_response(
    data: bytes,
    range_header: str | None,
    headers: dict[str, str],
    media_type: str = "application/octet-stream",
) -> Response:
    """200 with ``data``, 206 with one range of it, or 416 (small in-memory representations)."""
    size = len(data)
    headers = {**headers, "Accept-Ranges": "bytes"}
    try:
        span = parse_range(range_header, size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if span is None:
        return Response(data, media_type=media_type, headers=headers)
    first, last = span
    return Response(
        data[first : last + 1],
        status_code=206,
        media_type=media_type,
        headers={**headers, "Content-Range": f"bytes {first}-{last}/{size}"},
    )

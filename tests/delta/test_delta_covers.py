"""The encoder's second matcher (HDiffPatch's covers): round trips, the choice of the smaller
patch, and the cover-table parser on malformed tables (it reads a C++ library's output, so it
checks every position before the encoder slices with it)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaguard.delta import encode
from otaguard.delta.covers import Cover, hdiff_covers, parse_hdiff13
from otaguard.delta.encoder import hdiff_middle, matched_ops
from otaguard.errors import DeltaError

from .kit import apply_bytes, make_patch, real_binary, rebuilt

pytest.importorskip("hdiffpatch")


def pack(value: int, tag: int | None = None) -> bytes:
    """HDiffPatch's packed uint (most significant group first), optionally with a 1-bit tag."""
    bits = 6 if tag is not None else 7
    groups = []
    while value >= 1 << bits:
        groups.append(value & 0x7F)
        value >>= 7
    first = value | (1 << bits if groups else 0) | ((tag or 0) << 7)
    rest = [g | (0x80 if i else 0) for i, g in reversed(list(enumerate(groups)))]
    return bytes([first, *rest])


def hdiff13(old_size: int, new_size: int, covers: list[tuple[int, int, int, int]]) -> bytes:
    """An uncompressed HDIFF13 patch with these (tag, old step, new gap, length) covers."""
    table = b"".join(pack(s, t) + pack(g) + pack(n) for t, s, g, n in covers)
    head = [new_size, old_size, len(covers), len(table), 0, 0, 0, 0, 0, 0, 0]
    return b"HDIFF13&\0" + b"".join(pack(v) for v in head) + table


def test_parser_reads_what_hdiffpatch_writes() -> None:
    old = real_binary("bz2")[:30_000]
    new = rebuilt(old, seed=7)
    covers = hdiff_covers(old, new)
    assert covers
    end = 0
    for c in covers:
        assert c.new_pos >= end
        assert c.old_pos + c.length <= len(old)
        end = c.new_pos + c.length
    assert sum(c.length for c in covers) > len(new) // 2  # most of a rebuilt file is covered


def test_hand_made_table_parses() -> None:
    data = hdiff13(100, 90, [(0, 10, 5, 20), (1, 25, 3, 30)])
    assert parse_hdiff13(data, 100, 90) == [Cover(10, 5, 20), Cover(5, 28, 30)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HDIFF12&\0" + bytes(11), "not an HDiffPatch"),
        (b"HDIFF13&zlib\0" + bytes(11), "compressed"),
        (hdiff13(100, 91, []), "does not match"),
        (hdiff13(100, 90, [(0, 90, 0, 20)]), "outside"),  # old range past the end
        (hdiff13(100, 90, [(1, 5, 0, 20)]), "outside"),  # old position before 0
        (hdiff13(100, 90, [(0, 0, 80, 20)]), "outside"),  # new range past the end
        (hdiff13(100, 90, [(0, 0, 0, 20)])[:-1], "truncated|mismatch"),
        (b"HDIFF13&\0" + b"\xff" * 12, "too long|truncated"),
    ],
)
def test_malformed_tables_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(DeltaError, match=message):
        parse_hdiff13(data, 100, 90)


def test_every_truncation_of_a_table_is_refused() -> None:
    data = hdiff13(5000, 4000, [(0, 300, 200, 1000), (1, 1200, 0, 150), (0, 3000, 9, 700)])
    assert len(parse_hdiff13(data, 5000, 4000)) == 3
    for cut in range(len(data)):
        with pytest.raises(DeltaError):
            parse_hdiff13(data[:cut], 5000, 4000)


def test_overlapping_covers_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import otaguard.delta.encoder as enc

    monkeypatch.setattr(enc, "hdiff_covers", lambda o, n: [Cover(0, 0, 10), Cover(0, 5, 10)])
    with pytest.raises(DeltaError, match="overlap"):
        list(hdiff_middle(bytes(40), bytes(40)))


@pytest.mark.parametrize("matchers", [("bsdiff",), ("hdiffpatch",)])
def test_each_matcher_round_trips_a_rebuilt_binary(
    tmp_path: Path, matchers: tuple[str, ...]
) -> None:
    old = real_binary()
    new = rebuilt(old, seed=11)
    _, _, patch = make_patch(tmp_path, old, new, matchers=matchers)
    assert apply_bytes(old, patch.read_bytes()) == new


def test_the_smaller_matcher_wins(tmp_path: Path) -> None:
    old = real_binary()
    new = rebuilt(old, seed=12)
    (tmp_path / "o").write_bytes(old)
    (tmp_path / "n").write_bytes(new)
    sizes = {
        m: encode(tmp_path / "o", tmp_path / "n", tmp_path / m, matchers=(m,)).patch_size
        for m in ("bsdiff", "hdiffpatch")
    }
    both = encode(tmp_path / "o", tmp_path / "n", tmp_path / "both")
    assert both.patch_size == min(sizes.values())
    assert both.matcher == min(sizes, key=lambda m: sizes[m])


def test_unknown_matcher_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeltaError, match="matcher"):
        make_patch(tmp_path, b"a" * 10, b"b" * 10, matchers=("courgette",))


@st.composite
def related_pairs(draw: st.DrawFn) -> tuple[bytes, bytes]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    base = bytes(rng.choice(b"\x00\x01\x48\x89\xe8\xff") for _ in range(rng.randrange(0, 3000)))
    new = bytearray(base)
    for _ in range(draw(st.integers(0, 12))):
        at = rng.randrange(len(new) + 1)
        if rng.random() < 0.5:
            new[at:at] = rng.randbytes(rng.randrange(1, 40))
        else:
            del new[at : at + rng.randrange(1, 40)]
    return base, bytes(new)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(related_pairs())
def test_hdiff_ops_rebuild_any_pair(pair: tuple[bytes, bytes]) -> None:
    """Instructions from HDiffPatch's covers rebuild the new image exactly (checked without
    LZMA: replaying the instructions on the source)."""
    old, new = pair
    out, src = bytearray(), 0
    for op, arg, payload in matched_ops(old, new, hdiff_middle):
        if op.name == "SEEK":
            src += arg
            assert 0 <= src <= len(old)
        elif op.name == "INSERT":
            out += payload
        else:
            chunk = old[src : src + arg]
            out += (
                chunk
                if op.name == "COPY"
                else bytes((a + b) & 0xFF for a, b in zip(chunk, payload, strict=True))
            )
            src += arg
    assert bytes(out) == new

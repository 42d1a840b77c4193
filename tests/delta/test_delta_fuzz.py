"""Fuzzing the device decoder with hypothesis: truncated, bit-flipped, spliced and field-
rewritten patches. Every outcome must be a ``DeltaError`` or the exact target image (any
success passed the sha256 check); nothing else escapes, nothing hangs (pytest-timeout), and
Python-level memory stays bounded whatever lengths the patch claims.

Bounded in the default suite (a few seconds); ``make test-slow`` runs many more examples.
"""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaguard.delta import DeltaDecoder, encode
from otaguard.delta.container import HEADER_SIZE, SEGMENT_SIZE
from otaguard.errors import DeltaError

from .kit import real_binary, rebuilt

MEMORY_BOUND = 48 << 20  # Python allocations; LZMA dictionaries are capped at 8 MiB each


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, bytes, bytes]]:
    """(source, patch, target) for a delta and a full-image patch of a small real binary."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    old = real_binary("bz2")[:40_000]
    new = rebuilt(old, seed=3)
    rng = random.Random(4)
    noise_old, noise_new = rng.randbytes(3000), rng.randbytes(3000)
    out = []
    cases = {
        "delta": (old, new, ("bsdiff",), False),
        "full": (noise_old, noise_new, ("bsdiff",), False),
        "delta-hdiff": (old, new, ("hdiffpatch",), False),  # the second matcher's instructions
        "delta-split": (old, new, ("bsdiff",), True),  # split difference stream (codec 3)
    }
    for name, (a, b, matchers, split) in cases.items():
        (tmp / f"{name}.old").write_bytes(a)
        (tmp / f"{name}.new").write_bytes(b)
        encode(
            tmp / f"{name}.old",
            tmp / f"{name}.new",
            tmp / f"{name}.patch",
            matchers=matchers,
            split_difference=split,
        )
        out.append((a, (tmp / f"{name}.patch").read_bytes(), b))
    return out


def outcome(source: bytes, patch: bytes, target: bytes) -> None:
    out = io.BytesIO()
    try:
        DeltaDecoder(io.BytesIO(source), io.BytesIO(patch)).apply(out.write)
    except DeltaError:
        return
    assert out.getvalue() == target


mutations = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 64)),
    st.tuples(st.just("u64"), st.integers(0, 40), st.integers(0, (1 << 64) - 1)),
)


def mutate(patch: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(patch)
    for kind, where, value in ops:
        if not data:
            break
        at = where % len(data)
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            data[at] ^= value
        elif kind == "insert":
            data[at:at] = bytes([value])
        elif kind == "delete":
            del data[at : at + value]
        else:  # overwrite a u64 field of the header or the first segment record
            field = HEADER_SIZE - 8 - 32 if where == 0 else HEADER_SIZE + 8 * (where % 15)
            if field + 8 <= len(data):
                data[field : field + 8] = struct.pack("<Q", value)
    return bytes(data)


def _fuzz(
    corpus: list[tuple[bytes, bytes, bytes]], which: int, ops: list[tuple[str, int, int]]
) -> None:
    source, patch, target = corpus[which]
    outcome(source, mutate(patch, ops), target)


FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SLOW = settings(
    max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FAST
@given(which=st.integers(0, 3), ops=st.lists(mutations, min_size=1, max_size=4))
def test_mutated_patches_fail_cleanly(
    corpus: list[tuple[bytes, bytes, bytes]], which: int, ops: list[tuple[str, int, int]]
) -> None:
    _fuzz(corpus, which, ops)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@SLOW
@given(which=st.integers(0, 3), ops=st.lists(mutations, min_size=1, max_size=8))
def test_mutated_patches_fail_cleanly_long(
    corpus: list[tuple[bytes, bytes, bytes]], which: int, ops: list[tuple[str, int, int]]
) -> None:
    _fuzz(corpus, which, ops)


@FAST
@given(data=st.binary(max_size=HEADER_SIZE + 2 * SEGMENT_SIZE + 64))
def test_random_bytes_fail_cleanly(data: bytes) -> None:
    outcome(b"src", data, b"")


@pytest.mark.parametrize("which", [0, 3])  # whole and split difference streams
def test_every_truncation_fails_cleanly(
    corpus: list[tuple[bytes, bytes, bytes]], which: int
) -> None:
    source, patch, target = corpus[which]
    for cut in range(0, len(patch), max(1, len(patch) // 200)):
        with pytest.raises(DeltaError):
            DeltaDecoder(io.BytesIO(source), io.BytesIO(patch[:cut])).apply(io.BytesIO().write)
    outcome(source, patch, target)  # control: the whole patch applies


def test_claimed_lengths_do_not_drive_allocation(corpus: list[tuple[bytes, bytes, bytes]]) -> None:
    """Huge declared sizes in the header and the table: refused or bounded, never allocated."""
    source, patch, target = corpus[0]
    rng = random.Random(11)
    tracemalloc.start()
    try:
        for _ in range(200):
            ops = [
                (
                    "u64",
                    rng.randrange(41),
                    rng.choice([1 << 63, 1 << 40, 1 << 32, rng.getrandbits(64)]),
                )
            ]
            outcome(source, mutate(patch, ops), target)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND

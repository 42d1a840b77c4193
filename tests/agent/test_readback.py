"""SlotReadBack: the slot read back from the medium region by region while it is written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from otaguard.agent import readback
from otaguard.agent.readback import SlotReadBack, read_back_digest


def test_regions_read_back_as_they_become_durable(tmp_path: Path) -> None:
    data = os.urandom(3 * readback.READ_CHUNK + 123)
    slot = tmp_path / "slot_b.img"
    slot.write_bytes(b"")
    with SlotReadBack(slot) as rb, open(slot, "r+b") as w:
        for start in range(0, len(data), 700_000):
            w.write(data[start : start + 700_000])
            w.flush()
            os.fsync(w.fileno())
            rb.durable(w.tell())
            assert rb.scheduled == w.tell()
        assert rb.digest(len(data)) == hashlib.sha256(data).hexdigest()


def test_what_the_medium_holds_is_what_is_hashed(tmp_path: Path) -> None:
    """The read-back sees a byte the medium changed after the write (the writer's own
    buffers play no part)."""
    data = os.urandom(100_000)
    slot = tmp_path / "slot.img"
    slot.write_bytes(data)
    fd = os.open(slot, os.O_RDWR)
    os.pwrite(fd, bytes([data[5] ^ 1]), 5)
    os.close(fd)
    assert read_back_digest(slot, len(data)) != hashlib.sha256(data).hexdigest()


def test_a_short_slot_gives_no_digest(tmp_path: Path) -> None:
    slot = tmp_path / "slot.img"
    slot.write_bytes(b"x" * 1000)
    assert read_back_digest(slot, 1000) == hashlib.sha256(b"x" * 1000).hexdigest()
    assert read_back_digest(slot, 1001) is None
    with SlotReadBack(slot) as rb:
        rb.durable(2000)  # announced more than the file holds
        assert rb.digest(2000) is None


def test_a_read_error_reaches_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slot = tmp_path / "slot.img"
    slot.write_bytes(b"y" * 5000)
    real_pread = os.pread

    def failing(fd: int, n: int, offset: int) -> bytes:
        if offset >= 4096:
            raise OSError(5, "Input/output error")
        return real_pread(fd, n, offset)

    monkeypatch.setattr(readback.os, "pread", failing)
    monkeypatch.setattr(readback, "READ_CHUNK", 4096)
    with SlotReadBack(slot) as rb:
        rb.durable(4096)
        rb.durable(5000)
        with pytest.raises(OSError, match="Input/output"):
            rb.digest(5000)


def test_cache_dropped_for_each_region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    advised: list[tuple[int, int, int]] = []
    monkeypatch.setattr(
        readback.os, "posix_fadvise", lambda fd, off, n, advice: advised.append((off, n, advice))
    )
    slot = tmp_path / "slot.img"
    slot.write_bytes(b"z" * 3000)
    with SlotReadBack(slot) as rb:
        rb.durable(1000)
        rb.durable(3000)
        assert rb.digest(3000) == hashlib.sha256(b"z" * 3000).hexdigest()
    assert advised == [(0, 1000, os.POSIX_FADV_DONTNEED), (1000, 2000, os.POSIX_FADV_DONTNEED)]
    with SlotReadBack(slot, drop_cache=False) as rb:
        rb.digest(3000)
    assert len(advised) == 2


def test_closing_releases_the_file(tmp_path: Path) -> None:
    slot = tmp_path / "slot.img"
    slot.write_bytes(b"q" * 10)
    before = len(os.listdir("/proc/self/fd"))
    rb = SlotReadBack(slot)
    assert len(os.listdir("/proc/self/fd")) == before + 1
    rb.close()
    assert len(os.listdir("/proc/self/fd")) == before
    dropped = SlotReadBack(slot)  # dropped without close (a simulated power cut)
    del dropped
    assert len(os.listdir("/proc/self/fd")) == before

"""The agent's manifest sequence counter: strictly increasing across restarts and power cuts at
every durable operation (both disk models), one write per block of numbers, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from otaguard.agent.manifest_sequence import MAX_SEQUENCE, ManifestSequence, next_number
from otaguard.device.storage import PowerCut, PowerCutStorage, Storage
from otaguard.errors import ConfigError


class CountingStorage(Storage):
    def __init__(self) -> None:
        self.writes = 0

    def write_atomic(self, path: Path, data: bytes, *, mode: int | None = None) -> None:
        self.writes += 1
        super().write_atomic(path, data, mode=mode)


def test_next_number_pure() -> None:
    assert next_number(1, 0, 4) == (1, 4)  # first use: reserve 1..4
    assert next_number(2, 4, 4) == (2, 4)  # inside the block: nothing to write
    assert next_number(5, 4, 4) == (5, 8)
    assert next_number(9, 4, 4) == (9, 12)  # never below what was handed out
    assert next_number(MAX_SEQUENCE, MAX_SEQUENCE - 1, 64) == (MAX_SEQUENCE, MAX_SEQUENCE)


def test_increasing_across_restarts_with_one_write_per_block(tmp_path: Path) -> None:
    path = tmp_path / "seq.json"
    storage = CountingStorage()
    seen: list[int] = []
    for _restart in range(3):
        counter = ManifestSequence(path, storage, block=8)
        seen += [counter.take() for _ in range(10)]
    assert seen == sorted(set(seen)), "strictly increasing, never reused"
    assert storage.writes == 6  # 10 numbers per run: two blocks of 8 per run, not 10 writes


def test_lazy_and_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "seq.json"
    path.write_text("{not json")
    counter = ManifestSequence(path)  # the agent starts (install work is not blocked)
    with pytest.raises(ConfigError, match="unreadable"):
        counter.take()
    path.write_text('{"reserved": -3}')
    with pytest.raises(ConfigError, match="no valid number"):
        ManifestSequence(path).take()
    path.write_text(f'{{"reserved": {MAX_SEQUENCE}}}')
    with pytest.raises(ConfigError, match="used up"):
        ManifestSequence(path).take()


@pytest.mark.parametrize("lose_unsynced", [False, True])
def test_power_cut_at_every_operation_never_reuses_a_number(
    tmp_path: Path, lose_unsynced: bool
) -> None:
    """Cut the power at each durable operation of a run of takes, restart, go on: every
    number handed out before the cut is below every number after it."""
    probe = PowerCutStorage()
    counter = ManifestSequence(tmp_path / "probe.json", probe, block=3)
    for _ in range(7):
        counter.take()
    operations = probe.count
    assert operations > 0
    for cut_at in range(1, operations + 1):
        path = tmp_path / f"seq-{cut_at}.json"
        storage = PowerCutStorage(cut_at=cut_at, lose_unsynced=lose_unsynced)
        before: list[int] = []
        counter = ManifestSequence(path, storage, block=3)
        try:
            for _ in range(7):
                before.append(counter.take())
        except PowerCut:
            pass
        assert storage.cut, cut_at
        after = ManifestSequence(path, Storage(), block=3)
        nxt = [after.take() for _ in range(4)]
        assert not before or min(nxt) > max(before), (cut_at, before, nxt)
        assert nxt == sorted(set(nxt))


def test_the_file_is_private(tmp_path: Path) -> None:
    ManifestSequence(tmp_path / "seq.json").take()
    assert (tmp_path / "seq.json").stat().st_mode & 0o777 == 0o600

"""The injectable storage layer and its power-cut model."""

from __future__ import annotations

from pathlib import Path

import pytest

from otaguard.device.bootenv import UBootEnv
from otaguard.device.otp import OtpCounter
from otaguard.device.storage import PowerCut, PowerCutStorage, Storage


def test_plain_storage_round_trips(tmp_path: Path) -> None:
    st = Storage()
    p = tmp_path / "f"
    st.write_atomic(p, b"hello")
    assert p.read_bytes() == b"hello"
    st.write_at(p, 1, b"EL")
    assert p.read_bytes() == b"hELlo"
    st.append(p, b"!")
    st.truncate_file(p, 3)
    assert p.read_bytes() == b"hEL"
    assert not (tmp_path / ".f.tmp").exists()


def test_counting_storage_counts_each_primitive(tmp_path: Path) -> None:
    st = PowerCutStorage()
    st.write_atomic(tmp_path / "f", b"x")
    assert st.count == 4
    assert st.counts == {"write": 1, "fsync": 1, "rename": 1, "truncate": 0, "fsync_dir": 1}


@pytest.mark.parametrize("lose", [False, True])
def test_atomic_replace_is_old_or_new_at_every_cut(tmp_path: Path, lose: bool) -> None:
    p = tmp_path / "journal"
    for k in range(1, 5):
        Storage().write_atomic(p, b"old contents")
        st = PowerCutStorage(cut_at=k, lose_unsynced=lose)
        with pytest.raises(PowerCut):
            st.write_atomic(p, b"NEW")
        assert p.read_bytes() in (b"old contents", b"NEW"), k
        # Nothing runs after the cut.
        with pytest.raises(PowerCut):
            st.write_atomic(p, b"later")
    # Only a cut at the last step (directory fsync) can leave the new version...
    Storage().write_atomic(p, b"old contents")
    st = PowerCutStorage(cut_at=4, lose_unsynced=lose)
    with pytest.raises(PowerCut):
        st.write_atomic(p, b"NEW")
    # ... and only when the disk kept the un-synced rename.
    assert p.read_bytes() == (b"old contents" if lose else b"NEW")


def test_torn_write_keeps_a_prefix_and_lost_cache_keeps_nothing(tmp_path: Path) -> None:
    p = tmp_path / "slot"
    p.write_bytes(b"A" * 8)
    with pytest.raises(PowerCut):
        PowerCutStorage(cut_at=1).write_at(p, 0, b"B" * 8)
    assert p.read_bytes() == b"BBBBAAAA"

    p.write_bytes(b"A" * 8)
    st = PowerCutStorage(cut_at=3, lose_unsynced=True)

    def grow() -> None:
        with st.open_update(p, 4) as w:
            w.write(b"C" * 8)  # op 1: grows the file, not synced
            w.write(b"D" * 2)  # op 2
            w.sync()  # op 3: the power goes off before the data is safe

    with pytest.raises(PowerCut):
        grow()
    assert p.read_bytes() == b"A" * 8


def test_synced_data_survives_a_later_cut(tmp_path: Path) -> None:
    p = tmp_path / "slot"
    p.write_bytes(b"")
    st = PowerCutStorage(cut_at=3, lose_unsynced=True)

    def write() -> None:
        with st.open_update(p, 0) as w:
            w.write(b"safe")
            w.sync()
            w.write(b"lost")

    with pytest.raises(PowerCut):
        write()
    assert p.read_bytes() == b"safe"


def test_redundant_env_survives_a_cut_at_every_write(tmp_path: Path) -> None:
    paths = [tmp_path / "env1", tmp_path / "env2"]
    UBootEnv(paths).write({"boot_slot": "a", "bootcount": "0"})
    UBootEnv(paths).update(bootcount="1")
    for k in (1, 2):
        for lose in (False, True):
            env = UBootEnv(paths, storage=PowerCutStorage(cut_at=k, lose_unsynced=lose))
            with pytest.raises(PowerCut):
                env.update(boot_slot="b")
            assert UBootEnv(paths).read() in (
                {"boot_slot": "a", "bootcount": "1"},
                {"boot_slot": "b", "bootcount": "1"},
            )


def test_otp_never_goes_down_when_cut(tmp_path: Path) -> None:
    path = tmp_path / "fuses"
    OtpCounter(path).raise_to(2)
    for k in (1, 2):
        with pytest.raises(PowerCut):
            OtpCounter(path, PowerCutStorage(cut_at=k)).raise_to(6)
        assert 2 <= OtpCounter(path).value() <= 6

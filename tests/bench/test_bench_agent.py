"""Keeps bench/agent_memory.py working: a small image installed over the network and from a
bundle in child processes gives sane, consistent figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_agent_benchmark_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setattr(
        sys,
        "argv",
        ["agent_memory.py", "--sizes", "2", "--repeat", "2", "--out", str(tmp_path)],
    )
    import agent_memory

    agent_memory.main()
    summary = json.loads((tmp_path / "agent_memory.json").read_text())
    r = summary["results"]["2MiB"]
    assert 2 <= r["image_mib"] < 2.01
    net, off = r["network"], r["offline"]
    for part in (net, off):
        assert 20 < part["peak_rss_mib"] < 400
    # The data path is part of the whole install, and both took real time.
    assert 0 < net["data_path_s"] <= net["whole_s"]
    assert net["ratio_to_download"] == pytest.approx(
        r["baseline_download_s"] / net["data_path_s"], rel=0.05, abs=0.01
    )
    assert off["runs"] == 2
    assert len(off["data_path_s"]) == len(off["paired_copy_s"]) == 2
    low, high = off["ratio_range"]
    assert 0 < low <= off["ratio_to_copy"] <= high
    assert summary["throughput_goal_met"] == (summary["min_offline_ratio_to_copy"] >= 0.8)


def test_transitions_are_read_from_the_agent_log() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import agent_memory
    finally:
        sys.path.remove(str(BENCH))
    log = "\n".join(
        [
            '{"ts": "2026-11-25T10:00:00.000+00:00", "msg": "booted"}',
            '{"ts": "2026-11-25T10:00:00.100+00:00", "msg": "transition", "event": "accept"}',
            "not json",
            '{"ts": "2026-11-25T10:00:01.350+00:00", "msg": "transition", "event": "verified"}',
            '{"ts": "2026-11-25T10:00:01.400+00:00", "msg": "transition", "event": "installed"}',
            '{"ts": "2026-11-25T10:00:09.000+00:00", "msg": "transition", "event": "accept"}',
        ]
    )
    assert agent_memory.phases(log, "x") == {"data_path_s": 1.25, "switch_s": 0.05}
    with pytest.raises(SystemExit, match="did not reach the slot switch"):
        agent_memory.phases(log.replace("verified", "error"), "x")


def test_marginal_throughput_separates_fixed_cost() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import agent_memory
    finally:
        sys.path.remove(str(BENCH))

    def run(mib: float, install: list[float], copy: list[float]) -> dict[str, object]:
        return {"image_mib": mib, "offline": {"data_path_s": install, "paired_copy_s": copy}}

    # install: 30 ms fixed + 1 s per 500 MiB; copy: 5 ms fixed + 1 s per 400 MiB
    small = run(16.0, [0.030 + 16 / 500, 0.9, 0.030 + 16 / 500], [0.005 + 16 / 400] * 3)
    large = run(516.0, [0.030 + 516 / 500] * 3, [0.1, 0.005 + 516 / 400, 0.005 + 516 / 400])
    m = agent_memory.marginal({"16MiB": small, "516MiB": large})
    assert m == {
        "offline_install_mib_s": 500.0,
        "copy_mib_s": 400.0,
        "ratio": 1.25,
        "offline_fixed_s": 0.03,
        "copy_fixed_s": 0.005,
    }

"""The metadata-bytes benchmark still runs and still shows what it claims, on a small size."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "tuf_metadata_bytes.py"


def test_hashed_bins_fetch_less_than_one_targets_file(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("tuf_metadata_bytes", BENCH)
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    assert bench.main(["--sizes", "300", "--out", str(tmp_path / "r")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    base, bins = rows
    assert (base["bins"], bins["bins"]) == (0, 2 ** bench.delegation.suggest_bit_length(300))
    assert bins["first_update_bytes"] < base["first_update_bytes"] / 3
    assert bins["next_update_bytes"] < base["next_update_bytes"] / 3
    # the device fetched exactly one bin, found through the team role
    fetched = [name for name, _size in bins["first_update_files"]]
    assert sum(1 for n in fetched if "sim-board-bins-" in n) == 1
    assert any(n.endswith(".sim-board.json") for n in fetched)
    assert "| 300 | hashed bins |" in (tmp_path / "r.md").read_text()

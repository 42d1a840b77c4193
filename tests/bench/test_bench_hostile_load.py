"""Keeps bench/hostile_load.py working: a tiny run gives sane figures, and every hostile kind
got the answer the server's limits promise (docs/SECURITY.md, "Limits")."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_hostile_load_benchmark_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import hostile_load

    out = tmp_path / "r.json"
    args = ["--samples", "30", "--idle", "5", "--flooders", "1", "--rate", "5"]
    results = hostile_load.main([*args, "--warmup", "0.5", "--rounds", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == results
    for phase in ("idle", "under_load"):
        assert 0 < results[phase]["p50_ms"] <= results[phase]["p99_ms"]
    assert results["ratio_p50"] == round(
        results["under_load"]["p50_ms"] / results["idle"]["p50_ms"], 2
    )
    counts = results["hostile_requests"]
    assert counts.get("range_416", 0) > 0  # the 5,000-digit Range: 416, never 500
    assert counts.get("wrong_bearer_401", 0) > 0
    assert counts.get("oversized_431", 0) + counts.get("oversized_closed", 0) > 0
    assert counts.get("slowloris_connections", 0) >= 5
    assert not any(k.endswith("_500") for k in counts)
    assert sys.modules["hostile_load"] is hostile_load

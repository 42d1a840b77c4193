"""Keeps bench/checkin_throughput.py working: a short run on SQLite gives sane figures (3 s per
target: at 1 s a loaded machine could finish no TLS handshake in time and count 0 requests).
40 devices: with two signed manifests each, more distinct requests than wrk's 32 connections
keep in flight, so no manifest is ever in flight twice (the second would be a refused replay)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk (Debian package wrk) is not installed")
def test_checkin_benchmark_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setattr(sys, "argv", ["checkin_throughput.py"])
    import checkin_throughput

    out = tmp_path / "r.json"
    results = checkin_throughput.main(
        ["--devices", "40", "--duration", "3", "--backends", "sqlite", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == results
    sqlite = results["sqlite"]
    assert sqlite["non_2xx"] == 0  # every check-in was authenticated and recorded
    assert sqlite["requests"] > 10
    assert 0 < sqlite["p50_ms"] <= sqlite["p99_ms"]
    assert results["ceiling"]["requests_per_s"] > 0
    assert 1 < results["manifest_verify_us"] < 100_000  # one signed-manifest verification
    # server CPU per request, read from /proc for the server process during the run
    assert sqlite["server_cpu_us_per_request"] > 0
    assert results["ceiling"]["server_cpu_us_per_request"] > 0
    framework = results["framework"]  # GET /healthz on the same server process
    assert framework["non_2xx"] == 0
    assert framework["requests"] > 10
    assert 0 < framework["p50_ms"] <= framework["p99_ms"]
    assert sqlite["ratio_to_framework"] == round(
        sqlite["requests_per_s"] / framework["requests_per_s"], 3
    )
    assert (
        0
        < sqlite["ratio_to_ceiling"]
        == round(sqlite["requests_per_s"] / results["ceiling"]["requests_per_s"], 3)
    )


def test_wrk_output_parsing() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import checkin_throughput
    finally:
        sys.path.remove(str(BENCH))
    out = """Running 1s test @ https://127.0.0.1:1/device/v1/checkin
  Latency Distribution
     50%   69.31ms
     75%   80.00ms
     90%  100.00ms
     99%    1.02s
  1658 requests in 5.00s, 300.00KB read
  Non-2xx or 3xx responses: 3
Requests/sec:    331.30
"""
    r = checkin_throughput.parse_wrk(out)
    assert r == {
        "requests_per_s": 331.3,
        "p50_ms": 69.31,
        "p99_ms": 1020.0,
        "requests": 1658,
        "non_2xx": 3,
    }

"""The fuzz targets of ``targets.py``: in ``make test`` a second of each in this process
(seeds, then hypothesis-made inputs); in ``make test-slow`` 1,000,000 executions of each under
atheris, each in its own process (libFuzzer owns it). A target passes when the run ends
normally: no exception outside its documented errors, no input over the per-input time bound,
RSS under the bound (libFuzzer reports each as a crash)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from run import hypothesis_run
from targets import TARGETS

RUN = Path(__file__).resolve().parent / "run.py"


def fuzz(name: str, tmp_path: Path, *args: str, timeout: float) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, str(RUN), name, "--artifacts", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return stats(output)


def stats(output: str) -> dict[str, float]:
    """libFuzzer's final statistics (``stat::name: value``), or the fallback's JSON line."""
    found = {k: float(v) for k, v in re.findall(r"stat::(\w+):\s+(\d+)", output)}
    if not found and (m := re.search(r'"executions": (\d+)', output)):
        found["number_of_executed_units"] = float(m.group(1))
    return found


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_briefly(name: str) -> None:
    target = TARGETS[name]
    executions = hypothesis_run(target, runs=150, seconds=1.0, timeout=5, rss_mb=2048)
    assert executions > len(target.seeds())


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_a_million(name: str, tmp_path: Path) -> None:
    runs = 1_000_000
    result = fuzz(name, tmp_path, "--runs", str(runs), "--rss-mb", "1024", timeout=4 * 3600)
    assert result["number_of_executed_units"] >= runs
    print(f"fuzz {name}: {result}")

"""Did a restructuring cost anything? Check-in and agent-install figures of several commits,
measured in one run, interleaved.

Issue 10 moved most of the code (routes, store, agent decisions, the shared network layer) and
promised no regression. Comparing with figures recorded on another day says little on a shared
machine, so this bench measures the commits side by side: each commit's ``src`` and ``bench``
are extracted (``git archive``) into a scratch directory, and each round runs, for every commit
in turn, that commit's own ``bench/checkin_throughput.py`` (SQLite, the embedded default) and
``bench/agent_memory.py`` (one image size) with ``PYTHONPATH`` pointing at that commit's
``src``. Rounds rotate the order of the commits, and the medians over the rounds are reported
as ratios to the first commit (the baseline).

The figures compared:

* check-ins/s and p50 latency under the same ``wrk`` load, and the server process's CPU time
  per check-in (user + system, from ``/proc``): the CPU figure depends least on what else the
  machine is doing;
* the agent's offline install throughput as a ratio to a plain copy made right after it (the
  ratio, not the seconds, so a slower moment of the machine cancels out) and its peak RSS.

    .venv/bin/python bench/refactor_regression.py [--refs 382d3bc,fb91964,HEAD] [--rounds 3]

Writes ``bench/results/refactor_regression.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def extract(ref: str, into: Path) -> Path:
    """``src``, ``bench`` and ``tests`` (benches use its kit) of ``ref`` under ``into/<ref>``."""
    tree = into / ref.replace("/", "_")
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "src", "bench", "tests"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def run_script(tree: Path, script: str, args: list[str], out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    proc = subprocess.run(
        [sys.executable, str(tree / "bench" / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{script} on {tree.name} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def checkin_round(tree: Path, work: Path, devices: int, duration: int) -> dict[str, float]:
    out = work / f"checkin-{tree.name}.json"
    args = ["--devices", str(devices), "--duration", str(duration)]
    r = run_script(
        tree, "checkin_throughput.py", [*args, "--backends", "sqlite", "--out", str(out)], out
    )
    s = r["sqlite"]
    return {
        "checkins_per_s": s["requests_per_s"],
        "p50_ms": s["p50_ms"],
        "server_cpu_us_per_checkin": s["server_cpu_us_per_request"],
        "non_2xx": s["non_2xx"],
    }


def agent_round(tree: Path, work: Path, size_mib: int) -> dict[str, float]:
    out_dir = work / f"agent-{tree.name}"
    args = ["--sizes", str(size_mib), "--repeat", "3", "--out", str(out_dir), "--work", str(work)]
    r = run_script(tree, "agent_memory.py", args, out_dir / "agent_memory.json")
    size = r["results"][f"{size_mib}MiB"]
    return {
        "offline_install_ratio_to_copy": size["offline"]["ratio_to_copy"],
        "offline_peak_rss_mib": size["offline"]["peak_rss_mib"],
        "network_peak_rss_mib": size["network"]["peak_rss_mib"],
    }


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in rounds), 3) for k in rounds[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refs", default="382d3bc,fb91964,HEAD")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--image-mib", type=int, default=64)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    refs = args.refs.split(",")
    names = {
        ref: subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", ref],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for ref in refs
    }
    per_ref: dict[str, list[dict[str, float]]] = {ref: [] for ref in refs}
    with tempfile.TemporaryDirectory(prefix="otaguard-regression-") as tmp:
        work = Path(tmp)
        trees = {ref: extract(ref, work / "trees") for ref in refs}
        for i in range(args.rounds):
            order = refs[i % len(refs) :] + refs[: i % len(refs)]
            for ref in order:
                figures = checkin_round(trees[ref], work, args.devices, args.duration)
                figures |= agent_round(trees[ref], work, args.image_mib)
                per_ref[ref].append(figures)
                print(f"round {i + 1} {names[ref]}: {json.dumps(figures)}", flush=True)
    summary: dict[str, Any] = {
        "command": " ".join(["bench/refactor_regression.py", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "load": {"devices": args.devices, "duration_s": args.duration, "image_mib": args.image_mib},
        "medians": {names[ref]: medians(per_ref[ref]) for ref in refs},
        "rounds_raw": {names[ref]: per_ref[ref] for ref in refs},
    }
    base = summary["medians"][names[refs[0]]]
    summary["ratio_to_baseline"] = {
        names[ref]: {
            k: round(v / base[k], 3) if base[k] else None
            for k, v in summary["medians"][names[ref]].items()
        }
        for ref in refs[1:]
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "refactor_regression.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary["medians"], indent=1))
    print(json.dumps(summary["ratio_to_baseline"], indent=1))


if __name__ == "__main__":
    main()

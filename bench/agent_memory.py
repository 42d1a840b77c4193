"""Peak memory and throughput of a real agent install, 16 MiB vs 512 MiB images.

For each size, a real server (TLS on 127.0.0.1, the demo world) publishes the image and deploys
it to one simulated device; then ``otaguard agent run --once --config agent.toml`` runs in its
own process and installs it over loopback HTTPS exactly as on a device (TUF refresh, director
assignment, streaming hash into the inactive slot, read-back verification, boot-env switch).
Peak RSS is the child's ``VmHWM`` (``/proc/self/status``, read by the child as it ends:
``ru_maxrss`` would include the parent's pages the child shared between fork and exec). Install time is from the agent's "booted"
log line to its last "cycle done" (process start-up and imports excluded). The baseline, in the
same run on the same disk, copies the same bytes with ``sha256`` + ``write`` (1 MiB chunks) and
one ``fsync``.

    .venv/bin/python bench/agent_memory.py [--sizes 16,512] [--out bench/results]

Goals (issue 4): peak RSS of the two within 8 MiB; throughput >= 0.8 x the baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

MIB = 1 << 20
EXTRA: dict[str, object] = {}


def baseline_copy(src: Path, dst: Path) -> float:
    """Seconds for a plain sha256 + write copy (1 MiB chunks) and one fsync."""
    h = hashlib.sha256()
    start = time.perf_counter()
    with open(src, "rb") as r, open(dst, "wb") as w:
        while chunk := r.read(MIB):
            h.update(chunk)
            w.write(chunk)
        w.flush()
        os.fsync(w.fileno())
    elapsed = time.perf_counter() - start
    h.hexdigest()
    return elapsed


def _ts(entry: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(str(entry["ts"])).timestamp()


def run_size(size_mib: int, work: Path) -> dict[str, Any]:
    from agent_kit import write_agent_toml
    from otaguard.demo import Demo

    d = Demo(work / f"world-{size_mib}", devices=1, port=0, payload_size=64 * 1024)
    d.start_server()
    try:
        d.setup_repository()
        _, v1 = d.release("1.0.0")
        # The image to install: payload of the benchmark size (header of ~200 bytes on top).
        d.payload_size = size_mib * MIB
        name, image = d.release("2.0.0", security_version=1)
        image_len = len(image)
        src = work / f"image-{size_mib}.bin"
        src.write_bytes(image)
        del image
        d.provision_fleet(v1)
        (dev,) = d.fleet
        dev.close()
        toml = write_agent_toml(dev, extra_agent=EXTRA)
        d.deploy(name)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(toml)],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        log_text = proc.stderr
        peak_kib = int(json.loads(proc.stdout.strip().splitlines()[-1])["vm_hwm_kib"])
        entries = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
        cycles = [e for e in entries if e["msg"] == "cycle done"]
        if proc.returncode != 0 or not cycles or cycles[-1].get("action") != "reboot":
            raise SystemExit(f"install of {size_mib} MiB failed: {log_text[-2000:]}")
        booted = next(e for e in entries if e["msg"] == "booted")
        install_s = _ts(cycles[-1]) - _ts(booted)
        assert dev.slots.path("b").stat().st_size == image_len
        copy_s = baseline_copy(src, work / f"copy-{size_mib}.bin")
        for f in (src, work / f"copy-{size_mib}.bin", dev.slots.path("b")):
            f.unlink()
        return {
            "image_mib": round(image_len / MIB, 3),
            "peak_rss_mib": round(peak_kib / 1024, 1),
            "install_s": round(install_s, 3),
            "install_mib_s": round(image_len / MIB / install_s, 1),
            "baseline_copy_s": round(copy_s, 3),
            "baseline_mib_s": round(image_len / MIB / copy_s, 1),
            "throughput_ratio": round(copy_s / install_s, 3),
        }
    finally:
        d.close()


def child(config: str) -> None:
    """``otaguard agent run --once --config CONFIG`` in this process, then its peak RSS."""
    from otaguard.cli.main import app

    try:
        app(["agent", "run", "--once", "--config", config], standalone_mode=False)
    finally:
        status = Path("/proc/self/status").read_text()
        hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        print(json.dumps({"vm_hwm_kib": int(hwm.split()[1])}), flush=True)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="16,512", help="image payload sizes in MiB")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (same disk)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for size in sizes:
            results[f"{size}MiB"] = run_size(size, Path(tmp))
            print(f"{size} MiB: {json.dumps(results[f'{size}MiB'])}", flush=True)
    rss = [r["peak_rss_mib"] for r in results.values()]
    ratios = [r["throughput_ratio"] for r in results.values()]
    summary = {
        "benchmark": "agent_memory",
        "path": "otaguard agent run --once over loopback HTTPS from a real server",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "results": results,
        "peak_rss_spread_mib": round(max(rss) - min(rss), 1),
        "rss_goal_met": max(rss) - min(rss) <= 8,
        "min_throughput_ratio": min(ratios),
        "throughput_goal_met": min(ratios) >= 0.8,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "agent_memory.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

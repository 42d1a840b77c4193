"""Peak memory and install throughput of the real agent, 16 MiB vs 512 MiB images.

For each size, a real server (TLS on 127.0.0.1, the demo world) publishes the image; two
simulated devices are provisioned on the old version. Each install runs in its own process,
exactly as on a device:

* **network**: ``otaguard agent run --once`` on device 0, deployed to it over loopback HTTPS
  (check-in, TUF refresh, director assignment, download streamed into the inactive slot while
  hashing, slot read back from the medium, boot-env switch);
* **offline**: ``otaguard agent install BUNDLE`` on device 1, from a bundle file on the same
  disk (``otaguard bundle create``), through the same code path.

Peak RSS is each child's ``VmHWM`` (``/proc/self/status``, read as it ends). From the agent's
structured log (one line per state transition) each install is split into its **data path**
(accepting the target until the slot is verified: download, streaming hash, writes and
checkpoints, read-back; this is what grows with the image) and the **fixed** per-update work
before and after it (check-in, TUF refresh, director assignment; boot-env switch, reports).

Baselines, in the same run on the same disk: a plain ``sha256`` + ``write`` copy of the image
file (1 MiB chunks, one ``fsync``) -- what the issue's goal compares with; and, for the network
install, a plain HTTPS download of the same target from the same server with ``sha256`` +
``write`` + ``fsync`` in its own process (the transfer the agent cannot beat).

    .venv/bin/python bench/agent_memory.py [--sizes 16,512] [--out bench/results]

Goals (issue 4): peak RSS of the two sizes within 8 MiB; install throughput >= 0.8 x the copy.
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


def transitions(log_text: str) -> dict[str, float]:
    """Time of each state-transition event (first occurrence) in an agent's JSON log."""
    times: dict[str, float] = {}
    for line in log_text.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == "transition":
                times.setdefault(str(entry["event"]), _ts(entry))
    return times


def run_child(*args: str) -> tuple[int, str, dict[str, Any]]:
    """This script with ``args`` in a child process: exit code, its log, its last JSON line."""
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False, timeout=900
    )
    last = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    return proc.returncode, proc.stderr, last


def phases(log_text: str, label: str) -> dict[str, float]:
    t = transitions(log_text)
    if not {"accept", "verified", "installed"} <= t.keys():
        raise SystemExit(f"{label}: install did not reach the slot switch: {log_text[-2000:]}")
    return {
        "data_path_s": round(t["verified"] - t["accept"], 3),
        "switch_s": round(t["installed"] - t["verified"], 3),
    }


def run_size(size_mib: int, work: Path, repeat: int = 1) -> dict[str, Any]:
    from kit.agent import write_agent_toml
    from otaguard.cli.main import app
    from otaguard.demo import Demo

    d = Demo(work / f"world-{size_mib}", devices=1 + repeat, port=0, payload_size=64 * 1024)
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
        net_dev, *off_devs = d.fleet
        for dev in d.fleet:
            dev.close()
        assert d.ctx is not None
        assert d.ctx.settings.tls is not None
        assert d.repo is not None
        ca = d.ctx.settings.tls.ca_cert
        bundle = work / f"image-{size_mib}.bundle"
        app(
            [
                "bundle",
                "create",
                str(bundle),
                "--target",
                name,
                "--server",
                d.url,
                "--ca",
                str(ca),
                "--root",
                str(d.repo.root_history()[0]),
            ],
            standalone_mode=False,
        )
        d.deploy(name)
        results: dict[str, Any] = {"image_mib": round(image_len / MIB, 3)}

        # network install
        toml = write_agent_toml(net_dev, extra_agent=EXTRA)
        code, log_text, last = run_child("--child", "run", str(toml))
        cycles = [json.loads(x) for x in log_text.splitlines() if '"cycle done"' in x]
        if code != 0 or not cycles or cycles[-1].get("action") != "reboot":
            raise SystemExit(f"network install of {size_mib} MiB failed: {log_text[-2000:]}")
        booted = next(json.loads(x) for x in log_text.splitlines() if '"booted"' in x)
        assert net_dev.slots.path("b").stat().st_size == image_len
        network = {
            "peak_rss_mib": round(last["vm_hwm_kib"] / 1024, 1),
            "whole_s": round(_ts(cycles[-1]) - _ts(booted), 3),
            **phases(log_text, "network"),
        }
        net_dev.slots.path("b").unlink()

        # offline installs from the bundle, each paired with a baseline copy right after it
        # (the machine is shared: pairs keep the ratio honest when its speed drifts)
        pairs: list[tuple[float, float]] = []
        offline_rss = 0.0
        for off_dev in off_devs:
            toml = write_agent_toml(off_dev, extra_agent=EXTRA)
            code, log_text, last = run_child("--child", "install", str(toml), str(bundle))
            if code != 0:
                raise SystemExit(f"offline install of {size_mib} MiB failed: {log_text[-2000:]}")
            assert off_dev.slots.path("b").stat().st_size == image_len
            offline_rss = max(offline_rss, last["vm_hwm_kib"] / 1024)
            data_path = phases(log_text, "bundle")["data_path_s"]
            off_dev.slots.path("b").unlink()
            pairs.append((data_path, baseline_copy(src, work / f"copy-{size_mib}.bin")))
            (work / f"copy-{size_mib}.bin").unlink()
        ratios = sorted(copy / data for data, copy in pairs)
        offline = {
            "peak_rss_mib": round(offline_rss, 1),
            "runs": len(pairs),
            "data_path_s": [round(data, 3) for data, _ in pairs],
            "paired_copy_s": [round(copy, 3) for _, copy in pairs],
            "ratio_to_copy": round(ratios[len(ratios) // 2], 3),  # median of the pairs
            "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
        }

        # baselines
        digest = d.repo.targets().signed.targets[name].hashes["sha256"]
        directory, base = name.rsplit("/", 1)
        url = f"{d.url}/tuf/targets/{directory}/{digest}.{base}"
        out = work / f"download-{size_mib}.bin"
        code, log_text, last = run_child("--download", url, str(ca), str(out))
        if code != 0:
            raise SystemExit(f"baseline download failed: {log_text[-2000:]}")
        download_s = float(last["seconds"])
        out.unlink()
        copy_s = baseline_copy(src, work / f"copy-{size_mib}.bin")
        for f in (src, bundle, work / f"copy-{size_mib}.bin"):
            f.unlink()

        def rate(seconds: float) -> float:
            return round(image_len / MIB / seconds, 1)

        network["data_path_mib_s"] = rate(network["data_path_s"])
        network["ratio_to_copy"] = round(copy_s / network["data_path_s"], 3)
        network["ratio_to_download"] = round(download_s / network["data_path_s"], 3)
        network["whole_ratio_to_copy"] = round(copy_s / network["whole_s"], 3)
        offline["data_path_mib_s"] = rate(sorted(d for d, _ in pairs)[len(pairs) // 2])
        results.update(
            {
                "baseline_copy_s": round(copy_s, 3),
                "baseline_copy_mib_s": rate(copy_s),
                "baseline_download_s": round(download_s, 3),
                "baseline_download_mib_s": rate(download_s),
                "network": network,
                "offline": offline,
            }
        )
        return results
    finally:
        d.close()


def marginal(results: dict[str, Any]) -> dict[str, float]:
    """Throughput as the slope between the smallest and the largest image (MiB per extra
    second), and the fixed time per install as the intercept: what grows with the image is
    told apart from what every install pays once (journal transitions and their fsyncs,
    reports, TUF and assignment checks)."""
    by_size = sorted(results.values(), key=lambda r: r["image_mib"])
    small, large = by_size[0], by_size[-1]
    mib = large["image_mib"] - small["image_mib"]

    def median(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    offline = (median(large["offline"]["data_path_s"]), median(small["offline"]["data_path_s"]))
    copy = (median(large["offline"]["paired_copy_s"]), median(small["offline"]["paired_copy_s"]))
    install_slope = mib / (offline[0] - offline[1])
    copy_slope = mib / (copy[0] - copy[1])
    return {
        "offline_install_mib_s": round(install_slope, 1),
        "copy_mib_s": round(copy_slope, 1),
        "ratio": round(install_slope / copy_slope, 3),
        "offline_fixed_s": round(offline[1] - small["image_mib"] / install_slope, 3),
        "copy_fixed_s": round(copy[1] - small["image_mib"] / copy_slope, 3),
    }


def download(url: str, ca: str, out: str) -> None:
    """The network baseline: a plain HTTPS GET of ``url`` with sha256 + write + fsync."""
    import ssl

    import httpx

    start = time.perf_counter()
    h = hashlib.sha256()
    with (
        httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=60) as client,
        client.stream("GET", url) as response,
        open(out, "wb") as w,
    ):
        response.raise_for_status()
        for piece in response.iter_bytes():
            h.update(piece)
            w.write(piece)
        w.flush()
        os.fsync(w.fileno())
    print(json.dumps({"seconds": time.perf_counter() - start, "sha256": h.hexdigest()}))


def child(mode: str, config: str, bundle: str | None = None) -> None:
    """``otaguard agent run --once`` (mode ``run``) or ``otaguard agent install BUNDLE``
    (mode ``install``) in this process, then its peak RSS."""
    from otaguard.cli.main import app

    args = ["agent", "run", "--once", "--config", config]
    if mode == "install":
        args = ["agent", "install", str(bundle), "--config", config, "--no-reboot"]
    try:
        app(args, standalone_mode=False)
    finally:
        status = Path("/proc/self/status").read_text()
        hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        print(json.dumps({"vm_hwm_kib": int(hwm.split()[1])}), flush=True)


def main() -> None:
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], *sys.argv[4:5])
        return
    if len(sys.argv) == 5 and sys.argv[1] == "--download":
        download(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="16,512", help="image payload sizes in MiB")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (same disk)")
    ap.add_argument(
        "--repeat", type=int, default=5, help="offline installs per size, each with its copy"
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for size in sizes:
            results[f"{size}MiB"] = run_size(size, Path(tmp), args.repeat)
            print(f"{size} MiB: {json.dumps(results[f'{size}MiB'])}", flush=True)
    rss = [r[mode]["peak_rss_mib"] for r in results.values() for mode in ("network", "offline")]
    offline_ratios = [r["offline"]["ratio_to_copy"] for r in results.values()]
    summary = {
        "benchmark": "agent_memory",
        "path": "otaguard agent run --once (loopback HTTPS) and otaguard agent install BUNDLE",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "results": results,
        "peak_rss_spread_mib": round(max(rss) - min(rss), 1),
        "rss_goal_met": max(rss) - min(rss) <= 8,
        "min_offline_ratio_to_copy": min(offline_ratios),
        "min_network_ratio_to_download": min(
            r["network"]["ratio_to_download"] for r in results.values()
        ),
        "min_network_ratio_to_copy": min(r["network"]["ratio_to_copy"] for r in results.values()),
        "throughput_goal_met": min(offline_ratios) >= 0.8,
    }
    if len(results) >= 2:
        summary["marginal"] = marginal(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "agent_memory.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
